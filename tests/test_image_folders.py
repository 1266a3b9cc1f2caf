"""Tests for keras_se.image_folders: split folders, class checks, corrupt images, the inferred size."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from keras_se import image_folders
from keras_se_core.errors import UsageError


def _image(path, size=(12, 20)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.zeros((*size, 3), "uint8")).save(path)


def test_folders_images_and_the_inferred_size(tmp_path):
    root = str(tmp_path)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            _image(os.path.join(root, split, cls, "a.png"))
    broken = os.path.join(root, "train", "cat", "b.png")
    with open(broken, "wb") as f:
        f.write(b"\x89PNG not really")
    splits = image_folders.split_dirs(root)
    assert splits == {"train": os.path.join(root, "train"), "validation": os.path.join(root, "val")}
    assert image_folders.check_image(os.path.join(root, "train", "cat", "a.png"))
    assert not image_folders.check_image(broken)
    with pytest.warns(UserWarning, match="Skipping corrupt or unreadable image: .*b.png"):
        paths, labels = image_folders.folder_images(splits["train"], ["cat", "dog"])
    assert [os.path.basename(os.path.dirname(p)) for p in paths] == ["cat", "dog"]
    assert labels.tolist() == [0, 1]
    size, note = image_folders.infer_image_size(paths)
    assert size == 12 and "median 12x20, the smaller side" in note  # 12 high, 20 wide


def test_bad_folders_are_one_line_errors(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "train", "cat"))
    with pytest.raises(UsageError, match="needs `train/` and `validation/`"):
        image_folders.split_dirs(root)
    os.makedirs(os.path.join(root, "val", "Cat"))
    with pytest.raises(UsageError, match=r"val/Cat \(training has 'cat'\)"):
        image_folders.check_validation_classes(image_folders.split_dirs(root), ["cat"], root)
    tiny = os.path.join(root, "t.png")
    _image(tiny, size=(4, 4))
    with pytest.raises(UsageError, match="too small.*--image-size"):
        image_folders.infer_image_size([tiny])
