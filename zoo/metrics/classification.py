"""Classification metrics and the confusion-matrix picture, in NumPy and Pillow.

```python
scores = classification_metrics(labels, probabilities, ["cat", "dog", "fox"])
picture = render_confusion_matrix(confusion_matrix(labels, predicted, 3), ["cat", "dog", "fox"])
```
"""

import re

TOP_K = 3
# Pixels of one cell of the confusion-matrix picture, at the least.
MIN_CELL = 26
# Characters of a class name shown on the picture's rows.
MAX_LABEL = 12


def metric_name(class_name):
    """`class_name` as the end of a metric key: letters, digits, `_ . -`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(class_name)) or "_"


def classification_metrics(labels, probabilities, class_names, top_k=TOP_K):
    """Accuracy, top-k accuracy, balanced accuracy and per-class accuracy.

    Args:
        labels: array of int, `(n,)`. The true classes.
        probabilities: array, `(n, num_classes)`. The model's outputs.
        class_names: list of str. One name per class.
        top_k: int. The k of `top_<k>_accuracy`, reported only when there
            are more than k classes (otherwise it is always 1). Defaults to 3.

    Returns:
        A dict of floats: `accuracy`, `top_<k>_accuracy`, `balanced_accuracy`
        (the mean of the per-class accuracies), and `accuracy_class_<name>`
        for every class with examples.
    """
    import numpy as np

    labels = np.asarray(labels, "int64")
    probabilities = np.asarray(probabilities)
    predicted = probabilities.argmax(axis=-1)
    correct = predicted == labels
    metrics = {"accuracy": float(correct.mean())}
    if probabilities.shape[-1] > top_k:
        # In the top k when fewer than k classes score strictly higher: ties
        # at the boundary count for the model, as in `tf.math.in_top_k`.
        own = np.take_along_axis(probabilities, labels[:, None], axis=-1)
        metrics[f"top_{top_k}_accuracy"] = float(((probabilities > own).sum(axis=-1) < top_k).mean())
    per_class = {}
    for index, name in enumerate(class_names):
        mask = labels == index
        if mask.any():
            per_class[name] = float(correct[mask].mean())
    metrics["balanced_accuracy"] = float(np.mean(list(per_class.values())))
    for name, value in per_class.items():
        metrics[f"accuracy_class_{metric_name(name)}"] = value
    return metrics


def confusion_matrix(labels, predicted, num_classes):
    """Counts, `(num_classes, num_classes)` int64: row = true class, column = predicted."""
    import numpy as np

    pairs = np.asarray(labels, "int64") * num_classes + np.asarray(predicted, "int64")
    return np.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)


def render_confusion_matrix(matrix, class_names):
    """Draws a confusion matrix as a uint8 RGB array, for TensorBoard or a PNG.

    Rows are the true classes, columns the predicted ones. Each cell shows
    its count, shaded by the share of its row (white: none, dark: the whole
    row), so a weak class stands out whatever the class sizes: the diagonal
    in blue, errors in red and never paler than a quarter shade. Columns
    are labelled with the class names when they fit in a cell, otherwise
    with class numbers, which then prefix the row labels.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    matrix = np.asarray(matrix, "int64")
    n = len(matrix)
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def size(text):
        x0, y0, x1, y1 = measure.textbbox((0, 0), text, font=font)
        return x1 - x0, y1 - y0

    cell = max(MIN_CELL, size(str(matrix.max()))[0] + 8)
    names = [str(name)[:MAX_LABEL] for name in class_names]
    columns = names if all(size(name)[0] <= cell - 4 for name in names) else [str(i) for i in range(n)]
    rows = names if columns is names else [f"{i} {name}" for i, name in enumerate(names)]
    line = size("Ag")[1]
    left, top = max(size(r)[0] for r in rows) + 10, line + 10
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = Image.new("RGB", (left + n * cell + 4, top + n * cell + 4), "white")
    draw = ImageDraw.Draw(image)
    for i in range(n):
        y = top + i * cell
        draw.text((4, y + (cell - line) // 2), rows[i], fill="black", font=font)
        draw.text((left + i * cell + (cell - size(columns[i])[0]) // 2, 4), columns[i], fill="black", font=font)
        for j in range(n):
            share = float(shares[i, j])
            if i != j and matrix[i, j]:
                # Errors in red, never paler than a quarter, so one in a row stands out.
                share = 0.25 + 0.75 * share
            ink = (8, 48, 107) if i == j else (165, 15, 21)
            colour = tuple(int(round(255 - share * (255 - c))) for c in ink)
            x = left + j * cell
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=colour, outline=(200, 200, 200))
            text = str(int(matrix[i, j]))
            w, h = size(text)
            draw.text((x + (cell - w) // 2, y + (cell - line) // 2), text,
                      fill="white" if share > 0.5 else "black", font=font)
    return np.asarray(image, dtype="uint8")
