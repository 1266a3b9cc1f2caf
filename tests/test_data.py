"""Data pipelines: embedded digits (real data), TFDS (mocked, offline), image folders."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_se import data


def _collect(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_digits_real_data_fixed_stratified_split():
    (x_train, y_train), (x_val, y_val), names = data.load_digits_arrays()
    assert x_train.shape == (1437, 32, 32, 3) and x_val.shape == (360, 32, 32, 3)
    assert x_train.dtype == np.uint8 and names == [str(i) for i in range(10)]
    # 3 identical channels, the full 0..255 range used.
    assert (
        (x_train[..., 0] == x_train[..., 2]).all() and x_train.max() == 255 and x_train.min() == 0
    )
    # Stratified: every class holds ~20 % of its images out.
    from sklearn.datasets import load_digits

    totals = np.bincount(load_digits().target)
    ratio = np.bincount(y_val, minlength=10) / totals
    assert np.all(np.abs(ratio - 0.2) < 0.02)
    (x_again, _), (x_val_again, y_val_again), _ = data.load_digits_arrays()
    np.testing.assert_array_equal(x_val, x_val_again)
    np.testing.assert_array_equal(y_val, y_val_again)


def test_digits_pipeline_shapes_normalisation_and_no_flip():
    info, sources = data.describe_dataset("digits")
    assert (info.num_classes, info.image_shape, info.train_size, info.val_size) == (
        10,
        (32, 32, 3),
        1437,
        360,
    )
    assert info.flip is False
    val = data.make_dataset(info, sources["validation"], training=False, batch_size=100)
    x, y = _collect(val)
    assert x.shape == (360, 32, 32, 3) and x.dtype == np.float32 and len(y) == 360
    raw = sources["validation"].raw.astype("float32") / 255.0
    expected = (raw - np.array(data.DIGITS_MEAN)) / np.array(data.DIGITS_STD)
    np.testing.assert_allclose(x, expected, atol=1e-5)
    train = data.make_dataset(info, sources["train"], training=True, batch_size=64)
    x, y = _collect(train)
    assert x.shape == (22 * 64, 32, 32, 3)  # the last partial batch is dropped


def test_epoch_is_a_pure_function_of_seed_and_epoch():
    info, sources = data.describe_dataset("digits", image_size=16)

    def epoch(k, seed=0):
        return _collect(
            data.make_dataset(
                info, sources["train"], training=True, batch_size=32, seed=seed, epoch=k
            )
        )

    x0, y0 = epoch(0)
    x0b, y0b = epoch(0)
    np.testing.assert_array_equal(x0, x0b)
    np.testing.assert_array_equal(y0, y0b)
    x1, y1 = epoch(1)
    assert not np.array_equal(y0, y1)
    assert not np.array_equal(epoch(0, seed=1)[1], y0)


@pytest.mark.slow
def test_input_pipelines_split_the_same_global_batches():
    """n pipelines × r replicas see exactly the single-device global batch, in order."""
    info, sources = data.describe_dataset("digits", image_size=16)
    kwargs = dict(training=True, batch_size=32, seed=3, epoch=2)
    single = list(data.make_dataset(info, sources["train"], **kwargs).take(3))
    workers = [
        list(
            data.make_dataset(
                info,
                sources["train"],
                num_input_pipelines=2,
                input_pipeline_id=i,
                replicas_per_pipeline=2,
                **kwargs,
            ).take(6)
        )
        for i in range(2)
    ]
    for step in range(3):
        parts = [workers[w][2 * step + r] for w in range(2) for r in range(2)]
        assert all(p[0].shape[0] == 8 for p in parts)
        np.testing.assert_array_equal(
            np.concatenate([p[1] for p in parts]), single[step][1].numpy()
        )
        np.testing.assert_allclose(np.concatenate([p[0] for p in parts]), single[step][0].numpy())


@pytest.mark.slow
def test_tfds_path_offline_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        train, val, info = data.get_datasets("cifar10", batch_size=4)
        x, y = next(iter(train))
    assert info.num_classes == 10 and info.image_shape == (32, 32, 3) and info.flip
    assert x.shape == (4, 32, 32, 3) and x.dtype == tf.float32
    assert len(info.class_names) == 10


def _write_folder(root, *, corrupt=False):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        for cls in ("cat", "dog", "fish"):
            folder = os.path.join(root, split, cls)
            os.makedirs(folder)
            for i in range(count):
                pixels = rng.integers(0, 255, size=(40, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, f"{i}.png"))
    bad = os.path.join(root, "train", "dog", "broken.png")
    if corrupt:
        with open(bad, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\nnot really a png")
    return bad


@pytest.mark.slow
def test_image_folder_skips_corrupt_file_with_warning(tmp_path):
    bad = _write_folder(str(tmp_path), corrupt=True)
    with pytest.warns(UserWarning, match="broken.png"):
        info, sources = data.describe_dataset(str(tmp_path))
    assert bad not in set(sources["train"].raw)
    assert (
        info.class_names == ["cat", "dog", "fish"] and info.train_size == 12 and info.val_size == 6
    )
    assert info.image_shape == (40, 40, 3)  # square images keep their native size
    info, sources = data.describe_dataset(str(tmp_path), image_size=64)
    x, y = next(iter(data.make_dataset(info, sources["train"], training=True, batch_size=6)))
    assert x.shape == (6, 64, 64, 3)
    xv, yv = _collect(data.make_dataset(info, sources["validation"], training=False, batch_size=4))
    assert xv.shape == (6, 64, 64, 3) and sorted(yv.tolist()) == [0, 0, 1, 1, 2, 2]


def test_bad_dataset_arguments(tmp_path):
    with pytest.raises(ValueError, match="dataset='no_such_dataset_xyz'"):
        data.describe_dataset("no_such_dataset_xyz")
    # Only "no such dataset" is a usage error: anything else TFDS raises keeps its traceback.
    with pytest.raises(AssertionError):
        data.describe_dataset("mnist:99.0.0")
    os.makedirs(tmp_path / "only_train" / "a")
    with pytest.raises(ValueError, match="train/.*validation/"):
        data.describe_dataset(str(tmp_path / "only_train"))


def test_tfds_failures_keep_their_cause(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")

    class Builder:
        def __init__(self, error):
            self.error = error

        def download_and_prepare(self, download_config=None):
            raise self.error

    def builder_raising(error):
        return lambda name, data_dir=None: Builder(error)

    monkeypatch.setattr(tfds, "builder", builder_raising(OSError("no route to host")))
    with pytest.raises(ValueError, match="could not be downloaded.*no route to host") as info:
        data.describe_dataset("some_tfds_name")
    assert isinstance(info.value.__cause__, OSError)
    monkeypatch.setattr(tfds, "builder", builder_raising(KeyError("a TFDS bug")))
    with pytest.raises(KeyError, match="a TFDS bug"):  # not a download failure: its traceback
        data.describe_dataset("some_tfds_name")

    def broken_registry(name, data_dir=None):
        raise RuntimeError("a TFDS bug while looking up the name")

    monkeypatch.setattr(tfds, "builder", broken_registry)
    with pytest.raises(RuntimeError, match="a TFDS bug"):  # not "Unknown dataset"
        data.describe_dataset("some_tfds_name")


def test_a_bug_while_checking_an_image_is_not_a_corrupt_file(tmp_path, monkeypatch):
    from PIL import Image

    _write_folder(str(tmp_path))

    def bug(*args, **kwargs):
        raise KeyError("a bug in the decoder")

    monkeypatch.setattr(Image, "open", bug)
    with pytest.raises(KeyError, match="a bug in the decoder"):
        data.describe_dataset(str(tmp_path))


def test_preprocessing_sidecar_round_trip(tmp_path):
    spec = data.Preprocessing(
        mean=(0.1, 0.2, 0.3), std=(1, 2, 3), image_size=(32, 32), interpolation="bicubic"
    )
    path = data.save_preprocessing(str(tmp_path / "model.keras"), spec)
    assert path.endswith("model.preprocessing.json")
    assert data.load_preprocessing(str(tmp_path / "model.keras")) == spec
    assert data.load_preprocessing(str(tmp_path / "other.keras")) is None
    x = np.array([[[[0, 255, 51]]]], "uint8")
    np.testing.assert_allclose(
        data.normalize(x, spec).numpy()[0, 0, 0], [-0.1, 0.4, (0.2 - 0.3) / 3], atol=1e-6
    )


def _indexed_images(root, per_class=10, size=8):
    """A folder dataset whose every image encodes its own class and number in its pixels."""
    from PIL import Image

    for split in ("train", "val"):
        for label in range(2):
            folder = os.path.join(root, split, f"c{label}")
            os.makedirs(folder)
            for i in range(per_class):
                value = label * per_class + i  # 0..19, unique per split
                Image.fromarray(np.full((size, size, 3), value * 10, "uint8")).save(
                    os.path.join(folder, f"{i:03d}.png")
                )


def _image_ids(ds, info, *, weighted=False):
    """The unique value drawn in each image (undoing the normalisation), with weights."""
    ids, weights = [], []
    for batch in ds:
        x = batch[0].numpy() * np.array(info.preprocessing.std) + np.array(info.preprocessing.mean)
        # uniform images: the brightest pixel survives crops with zero padding and flips
        ids += np.round(x[..., 0].max(axis=(1, 2)) * 255 / 10).astype(int).tolist()
        weights += batch[2].numpy().tolist() if weighted else [1.0] * len(x)
    return ids, weights


@pytest.mark.slow
def test_folder_pipelines_decode_disjoint_slices_and_cover_the_split(tmp_path):
    """With 2 input pipelines each decodes only its slice of every global batch (so reads only
    those files); evaluation pads with weight-0 images so both run the same number of batches
    and every image counts exactly once; training is reproducible for a seed."""
    _indexed_images(str(tmp_path))
    info, sources = data.describe_dataset(str(tmp_path))
    assert not sources["train"].shardable(2)  # no files to shard by: global slices
    kwargs = dict(batch_size=4, num_input_pipelines=2)
    parts = [
        _image_ids(
            data.make_dataset(
                info,
                sources["validation"],
                training=False,
                weighted=True,
                input_pipeline_id=i,
                **kwargs,
            ),
            info,
            weighted=True,
        )
        for i in range(2)
    ]
    assert len(parts[0][0]) == len(parts[1][0])  # same number of evaluation batches
    counted = sorted(i for ids, w in parts for i, wi in zip(ids, w) if wi == 1.0)
    assert counted == list(range(20))  # 20 images, each once

    def train_ids(pipeline):
        ds = data.make_dataset(
            info, sources["train"], training=True, seed=3, input_pipeline_id=pipeline, **kwargs
        )
        return _image_ids(ds, info)[0]

    halves = [train_ids(0), train_ids(1)]
    assert set(halves[0]).isdisjoint(
        halves[1]
    )  # each pipeline trains on (and reads) its own images
    assert sorted(halves[0] + halves[1]) == sorted(
        _image_ids(
            data.make_dataset(info, sources["train"], training=True, seed=3, batch_size=4), info
        )[0]
    )
    assert train_ids(0) == halves[0]  # reproducible for a seed


def test_weighted_evaluation_of_in_memory_data_counts_each_image_once():
    info, sources = data.describe_dataset("digits", image_size=8)
    total = 0.0
    labels = []
    for pipeline in range(2):
        ds = data.make_dataset(
            info,
            sources["validation"],
            training=False,
            batch_size=16,
            num_input_pipelines=2,
            input_pipeline_id=pipeline,
            weighted=True,
        )
        for _, y, w in ds:
            total += float(np.sum(w))
            labels += y.numpy()[w.numpy() == 1].tolist()
    assert total == 360 and sorted(labels) == sorted(sources["validation"].labels.tolist())


def test_start_step_skips_whole_global_batches():
    """A run resumed at step 3 sees exactly the epoch's batches from the 4th on."""
    info, sources = data.describe_dataset("digits", image_size=8)
    full = [
        y.numpy()
        for _, y in data.make_dataset(
            info, sources["train"], training=True, batch_size=32, seed=1, epoch=2
        )
    ]
    resumed = [
        y.numpy()
        for _, y in data.make_dataset(
            info, sources["train"], training=True, batch_size=32, seed=1, epoch=2, start_step=3
        )
    ]
    assert len(resumed) == len(full) - 3
    for a, b in zip(full[3:], resumed):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_tfds_files_are_sharded_per_input_pipeline(tmp_path):
    """A TFDS dataset stored in 4 files: with 2 pipelines each reads 2 files (disjoint records
    that together are the split), and weighted evaluation counts every image once."""
    from keras_se.bench import suites_training as bench_training

    name = bench_training.write_tfds(str(tmp_path), images=48, files=4)
    info, sources = data.describe_dataset(name, data_dir=str(tmp_path))
    train = sources["train"]
    assert len(train.file_lengths) == 4 and train.shardable(2) and train.shardable(4)
    assert not train.shardable(8) and not train.shardable(1)
    every = sorted(bytes(raw) for raw, _ in train.raw.as_numpy_iterator())
    halves = [
        sorted(bytes(raw) for raw, _ in train.read_files(2, i).as_numpy_iterator())
        for i in range(2)
    ]
    assert [len(h) for h in halves] == [train.shard_size(2, i) for i in range(2)]
    assert set(halves[0]).isdisjoint(halves[1]) and sorted(halves[0] + halves[1]) == every

    batches = []
    for i in range(2):
        ds = data.make_dataset(
            info,
            sources["validation"],
            training=False,
            batch_size=4,
            num_input_pipelines=2,
            input_pipeline_id=i,
            weighted=True,
        )
        batches.append([(y.numpy(), w.numpy()) for _, y, w in ds])
    assert len(batches[0]) == len(batches[1])  # same number of evaluation steps
    assert sum(float(w.sum()) for part in batches for _, w in part) == info.val_size
    x, _ = next(
        iter(
            data.make_dataset(
                info, train, training=True, batch_size=8, num_input_pipelines=2, input_pipeline_id=1
            )
        )
    )
    assert x.shape == (4, 64, 64, 3)  # its half of each global batch


def test_small_image_augmentation_is_pad_4_random_crop_and_flip():
    """32x32 training images (CIFAR recipe): a 32x32 window of the image zero-padded by 4,
    horizontally flipped about half the time; every output is one of those 81 x 2 candidates."""
    rng = np.random.default_rng(0)
    image = tf.constant(rng.integers(1, 255, size=(32, 32, 3)), tf.uint8)
    padded = np.pad(image.numpy(), ((4, 4), (4, 4), (0, 0)))
    candidates = {}
    for dy in range(9):
        for dx in range(9):
            crop = padded[dy : dy + 32, dx : dx + 32]
            candidates[crop.tobytes()] = (dy, dx, False)
            candidates[crop[:, ::-1].tobytes()] = (dy, dx, True)
    seen = [
        candidates[
            data._augment(image, tf.constant([s, 7], tf.int64), 32, flip=True).numpy().tobytes()
        ]
        for s in range(40)
    ]
    assert len({(dy, dx) for dy, dx, _ in seen}) > 10  # the offset varies
    assert 8 <= sum(flipped for *_, flipped in seen) <= 32  # about half are flipped
    unflipped = [
        candidates[
            data._augment(image, tf.constant([s, 7], tf.int64), 32, flip=False).numpy().tobytes()
        ]
        for s in range(10)
    ]
    assert not any(flipped for *_, flipped in unflipped)


# --------------------------------------------------------------------------- image folder checks
def _png(path, height, width, value=0):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, "uint8")).save(path)


def _folder(root, train, val, size=(16, 16)):
    """``train``/``val``: {class folder: image count}; every image ``size``."""
    for split, classes in (("train", train), ("val", val)):
        for name, count in classes.items():
            for i in range(count):
                _png(os.path.join(root, split, name, f"{i:02d}.png"), *size, value=(10 * i) % 256)
    return str(root)


def test_validation_class_without_training_folder_is_an_error(tmp_path):
    """val/c with no train/c used to be dropped silently (5 of 15 images never evaluated)."""
    root = _folder(tmp_path, {"a": 5, "b": 5}, {"a": 5, "b": 5, "c": 5})
    with pytest.raises(data.UsageError) as err:
        data.describe_dataset(root)
    message = str(err.value)
    assert "\n" not in message and os.path.join("val", "c") in message
    assert f"dataset={root!r}" in message
    assert os.path.join("val", "a") not in message  # only the folders that have no partner
    # A misspelt (differently cased) folder is named with the training class it misses.
    root = _folder(tmp_path / "cased", {"cat": 2, "dog": 2}, {"Cat": 2, "dog": 2})
    with pytest.raises(data.UsageError, match=r"val/Cat \(training has 'cat'\)"):
        data.describe_dataset(root)
    # Training classes missing from validation stay allowed (the split is just smaller).
    root = _folder(tmp_path / "fewer", {"a": 2, "b": 2, "c": 2}, {"a": 2, "b": 2})
    info, sources = data.describe_dataset(root)
    assert info.class_names == ["a", "b", "c"] and info.val_size == 4


def test_cli_train_refuses_unpaired_validation_folder_before_writing(tmp_path, capsys):
    from tests.conftest import assert_usage_error, run_main

    root = _folder(tmp_path / "data", {"a": 5, "b": 5}, {"a": 5, "b": 5, "c": 5})
    out = tmp_path / "run"
    result = run_main(
        capsys, "train", "--dataset", root, "--image-size", "16", "--batch-size", "4",
        "--epochs", "1", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert_usage_error(result, os.path.join("val", "c"), root)
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_image_size_is_the_capped_median_of_the_training_images(tmp_path):
    """Not the first file's size: a 1x1 or a 3000x3000 first image changes nothing."""
    root = _folder(tmp_path / "tiny_first", {"a": 4, "b": 4}, {"a": 1, "b": 1}, size=(32, 32))
    _png(os.path.join(root, "train", "a", "00.png"), 1, 1)  # sorts first
    info, _ = data.describe_dataset(root)
    assert info.image_shape == (32, 32, 3) and info.preprocessing.image_size == (32, 32)
    assert info.image_size_note == (
        "image size 32x32 inferred from the median of 8 training images; set --image-size to choose"
    )
    root = _folder(tmp_path / "huge_first", {"a": 4, "b": 4}, {"a": 1, "b": 1}, size=(32, 32))
    _png(os.path.join(root, "train", "a", "00.png"), 3000, 3000)
    assert data.describe_dataset(root)[0].image_shape == (32, 32, 3)
    # All large: the median is capped at the paper's 224 (and the note says so).
    root = _folder(tmp_path / "large", {"a": 2, "b": 1}, {"a": 1, "b": 1}, size=(300, 400))
    info, _ = data.describe_dataset(root)
    assert info.image_shape == (224, 224, 3)
    assert "(median 300x400, capped at 224)" in info.image_size_note
    # Non-square below the cap: the smaller median side.
    root = _folder(tmp_path / "wide", {"a": 2, "b": 1}, {"a": 1, "b": 1}, size=(20, 36))
    info, _ = data.describe_dataset(root)
    assert info.image_shape == (20, 20, 3) and "(median 20x36, the smaller side)" in (
        info.image_size_note
    )
    # A given size is used as is, with no note.
    info, _ = data.describe_dataset(root, image_size=48)
    assert info.image_shape == (48, 48, 3) and info.image_size_note is None


def test_image_size_sample_is_bounded_and_spread_over_classes(tmp_path, monkeypatch):
    from PIL import Image

    root = _folder(tmp_path, {"a": 30, "b": 30, "c": 30}, {"a": 1, "b": 1, "c": 1}, size=(8, 8))
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda path, *a, **k: opened.append(path) or real_open(path))
    size, note = data.infer_image_size(data.describe_dataset(root)[1]["train"].raw, sample=10)
    assert size == 8 and "median of 10 training images" in note
    chosen = opened[-10:]
    assert len(set(chosen)) == 10
    assert {os.path.basename(os.path.dirname(p)) for p in chosen} == {"a", "b", "c"}


def test_too_small_images_name_the_image_size_flag(tmp_path, capsys):
    from tests.conftest import assert_usage_error, run_main

    root = _folder(tmp_path / "data", {"a": 3, "b": 3}, {"a": 1, "b": 1}, size=(4, 4))
    with pytest.raises(data.UsageError, match="--image-size") as err:
        data.describe_dataset(root)
    assert "\n" not in str(err.value) and "4x4" in str(err.value)
    # The size given explicitly is not inferred, so the same folder works.
    assert data.describe_dataset(root, image_size=16)[0].image_shape == (16, 16, 3)
    out = tmp_path / "run"
    result = run_main(capsys, "train", "--dataset", root, "--out", str(out), "--quiet")
    assert_usage_error(result, "--image-size", "4x4")
    assert not out.exists()
