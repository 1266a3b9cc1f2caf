"""Image folder datasets: ``root/{train,validation}/<class>/<image>``, checked and sized.

`keras_se.data.describe_dataset` reads an image folder through these: `split_dirs` finds the
two splits, `check_validation_classes` refuses validation classes training lacks,
`folder_images` lists the readable images (skipping corrupt ones with a warning, `check_image`)
and `infer_image_size` picks the model input size when none is given.

Example:
    >>> IMAGE_EXTENSIONS
    ('.png', '.jpg', '.jpeg', '.bmp', '.gif')
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from keras_se_core.errors import UsageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
#: Image folders without ``image_size``: the training images whose sizes are read
#: (headers only, evenly spaced over the class-sorted file list, so spread over classes).
IMAGE_SIZE_SAMPLE = 100
#: Largest inferred image size: the paper's 224x224 training crop, for which every
#: registry architecture is designed. Compute and memory grow with the area, so a
#: folder of 3000-pixel photos at native size would cost ~180x a 224 run; a larger
#: size is a deliberate choice (``image_size`` / ``--image-size``).
MAX_INFERRED_IMAGE_SIZE = 224
#: Smallest inferred image size: below 8 pixels the models' strided stages have
#: nothing left to reduce and the augmentation's padded crop is meaningless.
MIN_INFERRED_IMAGE_SIZE = 8


def split_dirs(root):
    """``{"train": dir, "validation": dir}`` of an image folder dataset (`UsageError` if either is missing).

    Example:
        >>> split_dirs("photos")  # doctest: +SKIP
        {'train': 'photos/train', 'validation': 'photos/val'}
    """
    splits = {}
    for train_name in ("train", "training"):
        if os.path.isdir(os.path.join(root, train_name)):
            splits["train"] = os.path.join(root, train_name)
    for val_name in ("validation", "val", "valid", "test"):
        if os.path.isdir(os.path.join(root, val_name)):
            splits["validation"] = os.path.join(root, val_name)
            break
    if set(splits) != {"train", "validation"}:
        raise UsageError(
            "An image folder dataset needs `train/` and `validation/` (or `val/`, `test/`) "
            f"subfolders with one folder per class. Received: dataset={root!r}"
        )
    return splits


def check_image(path):
    """True when Pillow can fully decode ``path``.

    Example:
        >>> check_image("photos/train/cat/broken.jpg")  # doctest: +SKIP
        False
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
        return True
    # OSError: UnidentifiedImageError, "image file is truncated"; SyntaxError, ValueError and
    # EOFError: broken PNG/JPEG chunks; DecompressionBombError: too many pixels. Anything else
    # raised while decoding is a bug and keeps its traceback.
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return False


def folder_images(split_dir, class_names):
    """``(paths, labels)`` of the readable images of ``split_dir``'s class folders, as arrays.

    Unreadable images are skipped with a warning each; no readable image is a `UsageError`.

    Example:
        >>> paths, labels = folder_images("photos/train", ["cat", "dog"])  # doctest: +SKIP
    """
    paths, labels, corrupt = [], [], []
    for label, name in enumerate(class_names):
        folder = os.path.join(split_dir, name)
        if not os.path.isdir(folder):
            continue
        for fname in sorted(os.listdir(folder)):
            if not fname.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = os.path.join(folder, fname)
            if check_image(path):
                paths.append(path)
                labels.append(label)
            else:
                corrupt.append(path)
    for path in corrupt:
        warnings.warn(f"Skipping corrupt or unreadable image: {path}", stacklevel=3)
    if not paths:
        raise UsageError(
            f"No readable images found under {split_dir!r} (extensions {IMAGE_EXTENSIONS})."
        )
    return np.array(paths), np.array(labels, "int64")


def check_validation_classes(splits, class_names, dataset):
    """Every validation class folder must have a training folder of the same name.

    Example:
        >>> check_validation_classes(split_dirs("photos"), ["cat", "dog"], "photos")  # doctest: +SKIP

    A validation folder without one would otherwise be dropped silently (its images never
    evaluated), and a misspelt one (``Cat`` beside ``cat``) would inflate the accuracy.
    """
    val_dir = splits["validation"]
    val_names = sorted(d for d in os.listdir(val_dir) if os.path.isdir(os.path.join(val_dir, d)))
    lower = {c.lower(): c for c in class_names}
    missing = [
        os.path.join(os.path.basename(val_dir), d)
        + (f" (training has {lower[d.lower()]!r})" if d.lower() in lower else "")
        for d in val_names
        if d not in class_names
    ]
    if missing:
        raise UsageError(
            f"Validation class folders with no training class folder of the same name: "
            f"{', '.join(missing)} (the classes are the folders of {splits['train']!r}). "
            f"Received: dataset={dataset!r}"
        )


def infer_image_size(paths, *, sample=IMAGE_SIZE_SAMPLE):
    """The square model input size for images ``paths``, and the line that explains it.

    The rule does not depend on any one file: the sizes of up to ``sample`` images,
    evenly spaced over ``paths`` (an image folder lists them class by class, so the
    sample spreads over the classes), are read from the file headers only (no
    decoding); the size is the smaller of the median height and the median width,
    capped at `MAX_INFERRED_IMAGE_SIZE` (224, the paper's training crop).

    Args:
        paths: image file paths (e.g. the training split of an image folder).
        sample: how many images to read at most.

    Returns:
        ``(size, note)``: the side in pixels and one line to print, e.g.
        ``"image size 64x64 inferred from the median of 100 training images; set
        --image-size to choose"``.

    Raises:
        UsageError: the inferred size is under `MIN_INFERRED_IMAGE_SIZE` (8) pixels,
            or no image could be read; the message names ``--image-size``.

    Example:
        >>> size, note = infer_image_size(glob.glob("photos/train/*/*.jpg"))  # doctest: +SKIP
        >>> print(note)  # doctest: +SKIP
        image size 224x224 inferred from the median of 100 training images (median 480x640, capped at 224); set --image-size to choose
    """
    from PIL import Image

    paths = list(paths)
    if not paths:
        raise UsageError("No training images to infer the image size from: set --image-size.")
    picks = np.unique(np.round(np.linspace(0, len(paths) - 1, min(sample, len(paths)))).astype(int))
    heights, widths = [], []
    for i in picks:
        with Image.open(paths[i]) as image:  # reads the header only
            width, height = image.size
        heights.append(height)
        widths.append(width)
    median_h, median_w = int(np.median(heights)), int(np.median(widths))
    median = min(median_h, median_w)
    where = f"the median of {len(picks)} training images"
    if median < MIN_INFERRED_IMAGE_SIZE:
        raise UsageError(
            f"The training images are too small for a model: {where} is {median_h}x{median_w} "
            f"(under {MIN_INFERRED_IMAGE_SIZE} pixels); set --image-size (image_size) to choose "
            f"the input size, e.g. --image-size 32."
        )
    size = min(median, MAX_INFERRED_IMAGE_SIZE)
    if size < median or median_h != median_w:
        extra = f" (median {median_h}x{median_w}"
        extra += (
            f", capped at {MAX_INFERRED_IMAGE_SIZE})" if size < median else ", the smaller side)"
        )
        where += extra
    return size, f"image size {size}x{size} inferred from {where}; set --image-size to choose"
