"""Seeded splits of arrays: stratified hold-outs and shuffled partitions.

The same seed gives the same split on every machine, so runs with other
training seeds are scored on the same held-out rows. Nothing here imports
TensorFlow.
"""


def stratified_split(x, labels, held_out_share=0.2, seed=0):
    """Splits `x` and `labels` keeping each class's share on both sides.

    Args:
        x: array. Examples, first axis the example.
        labels: array of int. Their classes.
        held_out_share: float. The held-out share, in (0, 1). Defaults to
            0.2.
        seed: int. Defaults to 0.

    Returns:
        `((x_train, y_train), (x_held, y_held))`.

    ```python
    (x_train, y_train), (x_test, y_test) = stratified_split(images, labels, 0.2)
    ```
    """
    from sklearn.model_selection import train_test_split

    x_train, x_held, y_train, y_held = train_test_split(
        x, labels, test_size=held_out_share, random_state=seed, stratify=labels
    )
    return (x_train, y_train), (x_held, y_held)


def shuffled_partition(num_rows, shares, seed=0):
    """Index arrays of a seeded shuffle of `num_rows` rows cut into parts.

    Args:
        num_rows: int. Rows to split.
        shares: dict of str to float. The share of each named part but the
            last, which takes the rest. Each part gets at least one row.
        seed: int. Defaults to 0.

    Returns:
        A dict of part name to an int array of row indices.

    ```python
    parts = shuffled_partition(100, {"test": 0.15, "validation": 0.15, "train": None})
    ```
    """
    import numpy as np

    order = np.random.default_rng(seed).permutation(num_rows)
    parts, start = {}, 0
    names = list(shares)
    for name in names[:-1]:
        size = max(1, int(round(shares[name] * num_rows)))
        parts[name] = order[start:start + size]
        start += size
    parts[names[-1]] = order[start:]
    return parts


def kfold(num_examples, num_folds, fold, seed=0, labels=None):
    """The rest and the held-out indices of one fold of a seeded K-fold split.

    Every example is held out in exactly one of the `num_folds` folds; the
    same seed gives the same folds. With `labels`, each fold keeps each
    class's share (scikit-learn's `StratifiedKFold`), else `KFold`.

    Args:
        num_examples: int. Examples to split.
        num_folds: int. K, at least 2 and at most `num_examples`.
        fold: int. Which fold to hold out, in [0, K).
        seed: int. Defaults to 0.
        labels: array of int or None. Classes, for a stratified split.

    Returns:
        `(rest, held_out)` int index arrays.

    ```python
    train, test = kfold(100, 5, fold=0, seed=0)
    ```
    """
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold

    if labels is None:
        splitter = KFold(num_folds, shuffle=True, random_state=seed).split(np.zeros(num_examples))
    else:
        splitter = StratifiedKFold(num_folds, shuffle=True, random_state=seed).split(
            np.zeros(num_examples), labels)
    for i, (rest, held_out) in enumerate(splitter):
        if i == fold:
            return rest, held_out
    raise ValueError(f"Invalid value for `fold`: must be in [0, {num_folds}). Received: fold={fold}.")
