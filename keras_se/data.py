"""Datasets and the one preprocessing function shared by training, export and analysis.

Images enter every keras_se model as ``float32`` in the model's data layout,
normalised by `normalize` with a `Preprocessing` spec: ``(pixel * scale - mean) / std``
per channel. Training applies it in the tf.data pipeline; export compiles the same
function into the SavedModel, so a served model sees exactly what training saw.
The spec travels with a model as a small JSON file (`save_preprocessing`).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from keras_se import image_folders
from keras_se.image_folders import (  # noqa: F401 - re-exported: keras_se.data's interface
    IMAGE_EXTENSIONS,
    MAX_INFERRED_IMAGE_SIZE,
    MIN_INFERRED_IMAGE_SIZE,
    infer_image_size,
)
from keras_se.models.preprocessing import (  # noqa: F401 (keras_se.data.Preprocessing)
    SIDECAR_SUFFIX,
    Preprocessing,
    read_sidecar,
    sidecar_path,
)
from keras_se_core.errors import UsageError
from keras_se_core.fileio import write_json

#: load_digits pixels (0..16, rescaled to 0..1): mean and std over the whole set.
DIGITS_MEAN = (0.3053, 0.3053, 0.3053)
DIGITS_STD = (0.3760, 0.3760, 0.3760)

PREPROCESSING_SUFFIX = SIDECAR_SUFFIX  # the one owner: keras_se.models.preprocessing


def normalize(images, preprocessing=None):
    """``(images * scale - mean) / std`` as float32, channels last; TensorFlow ops.

    Args:
        images: ``uint8`` (or float) tensor ``(..., H, W, C)``.
        preprocessing: a `Preprocessing` (default: ImageNet statistics).

    Returns:
        A ``float32`` tensor of the same shape.

    Example:
        >>> import numpy as np
        >>> x = normalize(np.full((1, 2, 2, 3), 255, "uint8"), Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3))
        >>> float(x[0, 0, 0, 0])
        1.0
    """
    import tensorflow as tf

    p = preprocessing or Preprocessing()
    x = tf.cast(images, tf.float32) * tf.constant(p.scale, tf.float32)
    mean = tf.constant(p.mean, tf.float32)
    std = tf.constant(p.std, tf.float32)
    return (x - mean) / std


def preprocessing_path(model_path):
    """The sidecar JSON path for a model file: ``model.keras`` → ``model.preprocessing.json``.

    Example:
        >>> preprocessing_path("runs/a/model.keras")
        'runs/a/model.preprocessing.json'
    """
    return sidecar_path(model_path)


def save_preprocessing(model_path, preprocessing):
    """Writes the `Preprocessing` spec beside ``model_path``; returns the JSON path.

    Example:
        >>> import os, tempfile
        >>> model_path = os.path.join(tempfile.mkdtemp(), "model.keras")
        >>> spec = Preprocessing(mean=(0.5,) * 3, std=(0.25,) * 3)
        >>> os.path.basename(save_preprocessing(model_path, spec))
        'model.preprocessing.json'
        >>> load_preprocessing(model_path) == spec
        True
    """
    path = preprocessing_path(model_path)
    write_json(path, preprocessing.to_dict())
    return path


def load_preprocessing(model_path, default=None):
    """Reads the spec saved beside ``model_path``; ``default`` when there is none.

    Example (a spec written by `save_preprocessing` reads back equal; see there):
        >>> load_preprocessing("no/such/model.keras", default=None) is None
        True
    """
    return read_sidecar(model_path, default)


# --------------------------------------------------------------------------- datasets
DIGITS = "digits"
#: Fraction of each digit class held out for validation (fixed, stratified).
DIGITS_VAL_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
DIGITS_SIZE = 32
#: Raw sources smaller than this are cached in memory.
CACHE_LIMIT_BYTES = 2 << 30


@dataclasses.dataclass
class DatasetInfo:
    """What the training, export and analysis code needs to know about a dataset.

    Example:
        >>> info, _ = describe_dataset("digits", image_size=16)
        >>> info.name, info.num_classes, info.image_shape, info.flip
        ('digits', 10, (16, 16, 3), False)
    """

    name: str
    num_classes: int
    class_names: list
    image_shape: tuple  # (H, W, C) of the model input
    train_size: int
    val_size: int
    preprocessing: Preprocessing
    flip: bool = True  # horizontal flip is a valid augmentation (not for digits)
    #: One line saying how the image size was inferred (image folders without
    #: ``image_size``), for the caller to print; None when it was given or fixed.
    image_size_note: str | None = None

    def to_dict(self):
        out = dataclasses.asdict(self)
        out["image_shape"] = list(self.image_shape)
        out["preprocessing"] = self.preprocessing.to_dict()
        return out


@dataclasses.dataclass
class _Source:
    """A dataset split before decoding: element i is (index, raw), raw = pixels, path or bytes."""

    raw: object  # np.ndarray of uint8 images, or np.ndarray of file paths, or a tf.data.Dataset
    labels: np.ndarray | None
    size: int
    kind: str  # "pixels", "path", "bytes"
    #: Examples per stored file (TFDS shards), or None (in-memory arrays, image folders).
    file_lengths: tuple | None = None
    #: ``read_files(num_pipelines, pipeline_id)`` → a dataset of ``(raw, label)`` read from
    #: files ``pipeline_id, pipeline_id + num_pipelines, ...`` only.
    read_files: object = None

    def shardable(self, num_pipelines):
        """True when ``num_pipelines`` pipelines can each read only their own files."""
        return (
            num_pipelines > 1
            and self.file_lengths is not None
            and len(self.file_lengths) >= num_pipelines
        )

    def shard_size(self, num_pipelines, pipeline_id):
        return int(sum(self.file_lengths[pipeline_id::num_pipelines]))


def load_digits_arrays(image_size=DIGITS_SIZE):
    """scikit-learn's bundled digits as uint8 RGB images, split 80/20 stratified.

    The 8x8 images (values 0..16) are scaled to 0..255, resized bilinearly to
    ``image_size`` and replicated to 3 channels. The split is fixed
    (``random_state=0``): 1,437 training and 360 validation images.

    Returns:
        ``(x_train, y_train), (x_val, y_val), class_names``.

    Example:
        >>> (x_train, y_train), (x_val, y_val), class_names = load_digits_arrays(image_size=16)
        >>> x_train.shape, x_train.dtype, x_val.shape, class_names[:3]
        ((1437, 16, 16, 3), dtype('uint8'), (360, 16, 16, 3), ['0', '1', '2'])
    """
    import tensorflow as tf
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype("float32")[..., None] * (255.0 / 16.0)
    images = tf.image.resize(images, (image_size, image_size), method="bilinear").numpy()
    images = np.repeat(np.clip(np.round(images), 0, 255).astype("uint8"), 3, axis=-1)
    labels = digits.target.astype("int64")
    x_train, x_val, y_train, y_val = train_test_split(
        images,
        labels,
        test_size=DIGITS_VAL_FRACTION,
        stratify=labels,
        random_state=DIGITS_SPLIT_SEED,
    )
    return (x_train, y_train), (x_val, y_val), [str(i) for i in range(10)]


def _folder_source(split_dir, class_names):
    paths, labels = image_folders.folder_images(split_dir, class_names)
    return _Source(paths, labels, len(paths), "path")


def _tfds_download_errors(tfds):
    """What a TFDS dataset that cannot be downloaded or prepared raises."""
    import tensorflow as tf
    from tensorflow_datasets.core.download import download_manager, extractor

    return (
        OSError,  # no network (requests' and urllib's errors), an unwritable data_dir
        tf.errors.OpError,  # tf.io.gfile on data_dir
        tfds.download.DownloadError,
        download_manager.NonMatchingChecksumError,
        extractor.ExtractError,
        AssertionError,  # TFDS's "Manual directory ... does not exist or is empty"
    )


def _tfds_sources(name, data_dir, manual_dir):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:  # other failures keep their traceback
        raise UsageError(
            f"Unknown dataset (not digits, a folder, or a TFDS name). Received: dataset={name!r}"
        ) from err
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    try:
        builder.download_and_prepare(download_config=download_config)
    except _tfds_download_errors(tfds) as err:  # any other failure keeps its traceback
        raise UsageError(
            f"TFDS dataset {name!r} is not prepared in data_dir={data_dir!r} and could not be downloaded "
            f"(needs network, or --manual-dir for datasets such as imagenet2012): {err}"
        ) from err
    # Prepared datasets list their splits; under tfds.testing.mock_data none are recorded.
    splits = list(builder.info.splits) or ["train", "test"]
    val_split = next((s for s in ("validation", "test") if s in splits), None)
    if "train" not in splits or val_split is None:
        raise UsageError(
            f"TFDS dataset {name!r} needs a 'train' and a 'validation' or 'test' split; it has {splits}."
        )
    features = builder.info.features
    image_key = next(k for k, f in features.items() if isinstance(f, tfds.features.Image))
    label_key = next(k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel))

    def read(tfds_split, context=None):
        ds = builder.as_dataset(
            split=tfds_split,
            decoders={image_key: tfds.decode.SkipDecoding()},
            shuffle_files=False,
            read_config=tfds.ReadConfig(input_context=context),
        )
        return ds.map(lambda ex: (ex[image_key], ex[label_key]))

    def read_files(tfds_split):
        def fn(num_pipelines, pipeline_id):
            import tensorflow as tf

            return read(
                tfds_split, tf.distribute.InputContext(num_pipelines, pipeline_id, num_pipelines)
            )

        return fn

    sources = {}
    for split, tfds_split in (("train", "train"), ("validation", val_split)):
        ds = read(tfds_split)
        split_info = builder.info.splits[tfds_split] if builder.info.splits else None
        size = split_info.num_examples if split_info else 0
        if not size:
            size = int(ds.reduce(0, lambda n, _: n + 1))
        lengths = (
            tuple(split_info.shard_lengths) if split_info and split_info.shard_lengths else None
        )
        kind = "bytes" if ds.element_spec[0].dtype == "string" else "pixels"
        sources[split] = _Source(
            ds, None, size, kind, file_lengths=lengths, read_files=read_files(tfds_split)
        )
    label_feature = features[label_key]
    shape = features[image_key].shape
    return sources, list(label_feature.names), shape


def describe_dataset(name, *, data_dir=None, manual_dir=None, image_size=None):
    """Returns ``(DatasetInfo, sources)`` for ``name`` without building pipelines.

    Args:
        name: ``"digits"``, an image folder (``train/<class>/``, ``val/<class>/``), or a
            TFDS name.
        data_dir, manual_dir: TFDS directories.
        image_size: the square model input side. None: digits 32; a TFDS dataset its
            square native size, else 224; an image folder the median size of a sample of
            its training images, capped at 224 (`infer_image_size`), with the reason in
            ``DatasetInfo.image_size_note``.

    Returns:
        ``(DatasetInfo, {"train": source, "validation": source})``.

    Raises:
        UsageError: an unknown dataset; an image folder without both splits, without
            classes, with a validation class folder that has no training folder of the
            same name, or with images too small to infer a size from.

    Example:
        >>> info, sources = describe_dataset("digits", image_size=16)
        >>> info.image_shape, sources["train"].size
        ((16, 16, 3), 1437)
    """
    if name == DIGITS:
        size = image_size or DIGITS_SIZE
        (x_train, y_train), (x_val, y_val), class_names = load_digits_arrays(size)
        sources = {
            "train": _Source(x_train, y_train, len(x_train), "pixels"),
            "validation": _Source(x_val, y_val, len(x_val), "pixels"),
        }
        info = DatasetInfo(
            name=DIGITS,
            num_classes=10,
            class_names=class_names,
            image_shape=(size, size, 3),
            train_size=len(x_train),
            val_size=len(x_val),
            preprocessing=Preprocessing(mean=DIGITS_MEAN, std=DIGITS_STD, image_size=(size, size)),
            flip=False,
        )
        return info, sources
    if os.path.isdir(name):
        splits = image_folders.split_dirs(name)
        class_names = sorted(
            d
            for d in os.listdir(splits["train"])
            if os.path.isdir(os.path.join(splits["train"], d))
        )
        if not class_names:
            raise UsageError(
                f"No class folders under {splits['train']!r}. Received: dataset={name!r}"
            )
        image_folders.check_validation_classes(splits, class_names, name)
        sources = {split: _folder_source(path, class_names) for split, path in splits.items()}
        note = None
        if image_size is None:
            image_size, note = image_folders.infer_image_size(sources["train"].raw)
    else:
        sources, class_names, native = _tfds_sources(name, data_dir, manual_dir)
        note = None
        if image_size is None:
            image_size = native[0] if native[0] is not None and native[0] == native[1] else 224
    shape = (image_size, image_size, 3)
    info = DatasetInfo(
        name=name,
        num_classes=len(class_names),
        class_names=class_names,
        image_shape=shape,
        train_size=sources["train"].size,
        val_size=sources["validation"].size,
        preprocessing=Preprocessing(image_size=(image_size, image_size)),
        image_size_note=note,
    )
    return info, sources


def _decode(raw, kind, image_size):
    """raw → uint8 (H, W, 3) at ``image_size``."""
    import tensorflow as tf

    if kind == "path":
        raw = tf.io.read_file(raw)
    if kind in ("path", "bytes"):
        image = tf.io.decode_image(raw, channels=3, expand_animations=False)
    else:
        image = tf.convert_to_tensor(raw)
        if image.shape.rank == 2:
            image = image[..., None]
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
    return image


def resize_and_crop(images, preprocessing, size):
    """Evaluation resize shared by the pipelines and the exported SavedModel.

    Resizes with the spec's interpolation so that the centre crop of fraction
    ``crop_pct`` is ``size`` (timm's evaluation transform; ``crop_pct=1`` is a plain
    resize), rounds back to 0..255 pixel values, and takes the centre crop.
    Works on one image ``(H, W, C)`` or a batch ``(N, H, W, C)``; returns float32.

    Example:
        >>> import numpy as np
        >>> spec = Preprocessing(crop_pct=0.875)
        >>> x = resize_and_crop(np.zeros((2, 40, 30, 3), "uint8"), spec, (16, 16))
        >>> tuple(x.shape), x.dtype.name
        ((2, 16, 16, 3), 'float32')
    """
    import tensorflow as tf

    height, width = size
    crop = preprocessing.crop_pct
    big = (int(np.ceil(height / crop)), int(np.ceil(width / crop)))
    x = tf.image.resize(images, big, method=preprocessing.interpolation)
    x = tf.clip_by_value(tf.round(x), 0.0, 255.0)
    top, left = (big[0] - height) // 2, (big[1] - width) // 2
    return x[..., top : top + height, left : left + width, :]


def _resize(image, image_size):
    import tensorflow as tf

    image = tf.image.resize(image, (image_size, image_size), method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _augment(image, seed, image_size, *, flip):
    """The paper's augmentation, sized to the image; ``seed`` is a stateless (2,) seed.

    Images of 64 pixels or more: Inception-style random-size crop (8–100 % of the area,
    aspect 3/4–4/3) resized to ``image_size``. Smaller images (CIFAR, digits): pad by
    1/8 of the side and take a random crop (random-size cropping destroys 32-pixel
    images). Horizontal flip when ``flip``.
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, 3)
    if image_size >= 64:
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image),
            bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            seed=seeds[0],
            min_object_covered=0.0,
            aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        image = tf.slice(image, begin, size)
        image = _resize(image, image_size)
    else:
        image = _resize(image, image_size)
        pad = max(image_size // 8, 1)
        padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        image = tf.image.stateless_random_crop(padded, (image_size, image_size, 3), seed=seeds[1])
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=seeds[2])
    return image


def _indexed_elements(source, num_pipelines, pipeline_id):
    """``(index, raw, label)`` elements of a pipeline, before shuffling.

    Sharded (TFDS files): this pipeline reads only its files and forms its own part of
    each global batch. Otherwise every pipeline forms the same global batches and keeps
    its slice (decoding only its slice: image folders read 1/n of the files this way too).

    Returns:
        ``(dataset, sharded, size, count)``: ``count`` elements, padded for evaluation to
        whole batches of ``size`` (every sharded pipeline pads to the largest shard).
    """
    import tensorflow as tf

    if source.shardable(num_pipelines):
        ds = source.read_files(num_pipelines, pipeline_id).enumerate()
        ds = ds.map(lambda i, el: (i * num_pipelines + pipeline_id, el[0], el[1]))
        size = max(source.shard_size(num_pipelines, i) for i in range(num_pipelines))
        return ds, True, size, source.shard_size(num_pipelines, pipeline_id)
    if isinstance(source.raw, tf.data.Dataset):
        ds = source.raw.enumerate().map(lambda i, el: (i, el[0], el[1]))
    else:
        indices = np.arange(source.size, dtype="int64")
        ds = tf.data.Dataset.from_tensor_slices((indices, source.raw, source.labels))
    return ds, False, source.size, source.size


def make_dataset(
    info,
    source,
    *,
    training,
    batch_size,
    seed=0,
    epoch=0,
    num_input_pipelines=1,
    input_pipeline_id=0,
    replicas_per_pipeline=1,
    start_step=0,
    weighted=False,
):
    """The tf.data pipeline for one split, one epoch, one input pipeline.

    Element order and augmentation are pure functions of ``(seed, epoch)``: the
    shuffle uses seed ``seed * 1000 + epoch`` and each image's augmentation a
    stateless seed from ``(seed, epoch, image index)``. So epoch ``k`` is the same
    whether a run is fresh or resumed after a crash.

    Several input pipelines (workers): by default every pipeline forms the same global
    batches of ``batch_size`` images and keeps (and decodes) its own contiguous slice of
    each, so a run is the same on one device, several replicas or several workers, and
    image-folder pipelines read only their slice's files. TFDS datasets stored in at
    least as many files as pipelines are sharded by file instead (``tfds.ReadConfig``
    with an ``InputContext``): pipeline ``i`` of ``n`` reads only files ``i, i+n, ...``
    and contributes ``batch_size / n`` of its own images to each global batch —
    reproducible for a given topology and seed, and each worker reads 1/n of the records.

    Args:
        info: the `DatasetInfo`.
        source: one split from `describe_dataset`.
        training: shuffle, augment and drop the last partial batch.
        batch_size: the GLOBAL batch size.
        seed, epoch: see above.
        num_input_pipelines, input_pipeline_id, replicas_per_pipeline: from
            ``tf.distribute.InputContext``; defaults describe a single device.
        start_step: skip this many global batches first (a run resumed mid-epoch);
            skipped before decoding, and the rest of the epoch is unchanged.
        weighted: for evaluation: pad the split with weight-0 copies of its first
            image to whole global batches and yield ``(images, labels, weights)``, so
            every replica gets full batches and sample-weighted sums count each image
            exactly once.

    Returns:
        A ``tf.data.Dataset`` of ``(float32 images, int64 labels)`` (plus ``float32
        weights`` with ``weighted``), batched per replica.

    Example:
        >>> info, sources = describe_dataset("digits", image_size=16)
        >>> ds = make_dataset(info, sources["validation"], training=False, batch_size=32)
        >>> images, labels = next(iter(ds))
        >>> tuple(images.shape), images.dtype.name, labels.dtype.name
        ((32, 16, 16, 3), 'float32', 'int64')
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    image_size = info.image_shape[0]
    per_pipeline = batch_size // num_input_pipelines
    ds, sharded, size, count = _indexed_elements(source, num_input_pipelines, input_pipeline_id)
    group = per_pipeline if sharded else batch_size  # the images this pipeline batches at once
    raw_bytes = source.raw.nbytes if isinstance(source.raw, np.ndarray) else source.size * 50_000
    if raw_bytes < CACHE_LIMIT_BYTES:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(size, 50_000), seed=seed * 1000 + epoch, reshuffle_each_iteration=False)
    ds = ds.map(lambda i, r, y: (i, r, y, tf.constant(1.0)))
    if weighted:
        padding = -(-size // group) * group - count
        if padding:
            ds = ds.concatenate(
                ds.take(1).repeat(padding).map(lambda i, r, y, w: (i, r, y, tf.constant(0.0)))
            )
    ds = ds.batch(group, drop_remainder=training)
    if start_step:
        ds = ds.skip(start_step)
    if num_input_pipelines > 1 and not sharded:
        start = input_pipeline_id * per_pipeline
        ds = ds.map(lambda *parts: tuple(p[start : start + per_pipeline] for p in parts))
    ds = ds.unbatch()

    def load(index, raw, label, weight):
        image = _decode(raw, source.kind, image_size)
        if training:
            element_seed = tf.stack([tf.cast(seed * 1000 + epoch, tf.int64), index])
            image = _augment(image, element_seed, image_size, flip=info.flip)
        elif image.shape[0] != image_size or image.shape[1] != image_size:
            image = tf.cast(
                resize_and_crop(image, info.preprocessing, (image_size, image_size)), tf.uint8
            )
        image = tf.ensure_shape(image, (image_size, image_size, 3))
        image, label = normalize(image, info.preprocessing), tf.cast(label, tf.int64)
        return (image, label, weight) if weighted else (image, label)

    ds = ds.map(load, num_parallel_calls=autotune, deterministic=True)
    ds = ds.batch(per_pipeline // replicas_per_pipeline, drop_remainder=training)
    return ds.prefetch(autotune)


def get_datasets(
    name=DIGITS, *, batch_size=64, data_dir=None, manual_dir=None, image_size=None, seed=0
):
    """Train and validation pipelines for one device (epoch 0) and the `DatasetInfo`.

    Example:
        >>> train, val, info = get_datasets("digits", batch_size=32)
        >>> info.num_classes, info.image_shape, info.train_size, info.val_size
        (10, (32, 32, 3), 1437, 360)
    """
    info, sources = describe_dataset(
        name, data_dir=data_dir, manual_dir=manual_dir, image_size=image_size
    )
    train = make_dataset(info, sources["train"], training=True, batch_size=batch_size, seed=seed)
    val = make_dataset(info, sources["validation"], training=False, batch_size=batch_size)
    return train, val, info
