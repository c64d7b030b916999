"""Image files for the image models: reading a folder, writing sample grids.

Everything here works on NumPy arrays with Pillow, so it runs without
TensorFlow: `read_folder` returns float images in [-1, 1], `make_grid` tiles
images in [0, 1] into one uint8 picture and `save_png` writes it atomically.

```python
images, labels, classes = zoo.data.images.read_folder("faces/", 32, 32, channels=3)
zoo.data.images.save_png(zoo.data.images.make_grid((images[:64] + 1) / 2), "grid.png")
```
"""

import math
import os

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def list_images(directory):
    """Returns the sorted image paths under `directory`, subfolders included.

    Raises:
        FileNotFoundError: `directory` does not exist.
        ValueError: it is a file, or holds no PNG or JPEG file.
    """
    directory = os.fspath(directory)
    if os.path.isfile(directory):
        raise ValueError(
            f"'{directory}' is a file; an image dataset is a folder of PNG/JPEG files (with "
            f"one subfolder per class for labels). Give its folder, such as "
            f"'{os.path.dirname(directory) or '.'}'.")
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Image folder '{directory}' not found (looked in {os.path.abspath(directory)})."
        )
    paths = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        paths.extend(
            os.path.join(root, f) for f in sorted(files)
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
        )
    if not paths:
        raise ValueError(
            f"Image folder '{directory}' holds no images. Accepted files: "
            f"{', '.join(IMAGE_EXTENSIONS)} (in the folder or its subfolders)."
        )
    return paths


def read_image(path, height, width, channels):
    """Reads one image as float32 in [-1, 1], shaped `(height, width, channels)`.

    The image is center-cropped to the target aspect ratio, then resized, so
    nothing is stretched. Grayscale and colour convert as `channels` asks.

    Raises:
        ValueError: the file is not a readable PNG or JPEG image.
    """
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(
            f"Could not read image '{path}' ({type(e).__name__}: {e}). Accepted: "
            f"PNG and JPEG files; remove or replace this file."
        ) from None
    w, h = image.size
    target = width / height
    if w / h > target:  # Too wide: crop the sides.
        new_w = max(1, round(h * target))
        box = ((w - new_w) // 2, 0, (w - new_w) // 2 + new_w, h)
    else:
        new_h = max(1, round(w / target))
        box = (0, (h - new_h) // 2, w, (h - new_h) // 2 + new_h)
    image = image.resize((width, height), Image.Resampling.LANCZOS, box=box)
    array = np.asarray(image, dtype="float32").reshape(height, width, channels)
    return array / 127.5 - 1.0


def read_folder(directory, height, width, channels):
    """Reads every PNG and JPEG under `directory` at one size.

    Args:
        directory: str. The folder. Images may sit in subfolders; with two or
            more subfolders, their names are the class labels.
        height: int. Height to resize to.
        width: int. Width to resize to.
        channels: int. 1 (grayscale) or 3 (RGB).

    Returns:
        `(images, labels, class_names)`: float32 images in [-1, 1] of shape
        `(n, height, width, channels)`, int labels (or None when the images
        do not sit in two or more class subfolders) and the class names.

    ```python
    images, labels, classes = read_folder("digits/", 28, 28, channels=1)
    ```
    """
    import numpy as np

    paths = list_images(directory)
    images = np.stack([read_image(p, height, width, channels) for p in paths])
    parents = [os.path.relpath(os.path.dirname(p), directory).split(os.sep)[0] for p in paths]
    class_names = sorted(set(parents))
    if len(class_names) < 2 or "." in class_names:
        return images, None, []
    labels = np.array([class_names.index(p) for p in parents], dtype="int64")
    return images, labels, class_names


def make_grid(images, columns=None, min_cell=32, pad=1):
    """Tiles images in [0, 1] into one uint8 picture.

    Args:
        images: array of shape `(n, height, width, channels)`, values in [0, 1].
        columns: int. Images per row. Defaults to a square-ish grid.
        min_cell: int. Small images are enlarged (nearest neighbour, by a
            whole factor) until a cell is at least this many pixels wide, so
            that 8x8 digits are visible. Defaults to 32.
        pad: int. Pixels of gray between cells. Defaults to 1.

    Returns:
        A uint8 array of shape `(rows * cell_h + pad, columns * cell_w + pad,
        channels)`.
    """
    import numpy as np

    images = np.clip(np.asarray(images, dtype="float32"), 0.0, 1.0)
    n, h, w, c = images.shape
    scale = max(1, math.ceil(min_cell / max(h, w)))
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = h * scale, w * scale
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 0.5, "float32")
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = image
    return np.round(grid * 255).astype("uint8")


def save_png(grid, path):
    """Writes a uint8 `(height, width, channels)` array as a PNG, atomically."""
    from PIL import Image

    from zoo.files import atomic_path

    array = grid[..., 0] if grid.shape[-1] == 1 else grid
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path
