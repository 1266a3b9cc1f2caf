"""Named reference weights: the pretrained configurations of every architecture, resolved.

timm's arrangement: each architecture module lists its pretrained configurations
beside its ``ARCHITECTURES`` rows (`keras_se.models.resnet.PRETRAINED`: timm's name,
the keras_se model, the key layout, the evaluation `Preprocessing`, timm's release
URL), ``keras_se.models`` registers them here, and this module resolves a name to the
builder options the weights need, downloads them and loads them with
`keras_se.weights` (which maps keys and reads files and knows nothing of models).

Example:
    >>> from keras_se.models import pretrained
    >>> pretrained.get_source("timm/legacy_senet154").model
    'senet154'
    >>> pretrained.source_architecture("timm/seresnet50.ra2_in1k")
    {'stride_in_1x1': False, 'stem_pool': 'torch'}

Weights into a built model (`load_weights`):

Weights into a built model: every kind of source, and a fresh classifier when classes differ.

Fine-tuning starts from pretrained weights and a new head, as timm's
``create_model(name, pretrained=True, num_classes=N)`` and keras-hub's
``ImageClassifier.from_preset(preset, num_classes=N)`` do: when the weights' classifier
has another class count than the model's ``predictions`` layer, the backbone is loaded
(all of it, or nothing) and the classifier keeps its fresh initialization, said in one
warning line. `load_weights` is that one entry point; the builders call it for their
``weights`` argument, and a trainer can call it on a model it built itself.

Sources:

* a named source (``"timm/legacy_seresnet50.in1k"``, downloaded) or a timm state dict
  file (``.safetensors``/``.pth``/``.bin``): mapped key by key by `keras_se.weights`;
* a Keras weights file (``.weights.h5``) or a whole model (``.keras``): Keras's own
  file layout (each top-level layer's variables under ``layers/<class name>[_k]``,
  numbered in network order), matched layer by layer and shape by shape before any
  variable is assigned. Models with nested models as layers load through
  ``model.load_weights`` instead (no fresh head there). Legacy ``.h5`` files too.

Example (load_weights):
    >>> from keras_se import models
    >>> model = models.get("se_resnet18", input_shape=(32, 32, 3), classes=5)
    >>> info = models.load_weights(model, "ten_classes.weights.h5")  # doctest: +SKIP
    >>> info.skipped, info.source_classes, info.model_classes        # doctest: +SKIP
    (('predictions',), 10, 5)
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import warnings
import zipfile

import numpy as np

from keras_se import weights as reference
from keras_se.models import registry
from keras_se.models.preprocessing import Preprocessing, attach, read_sidecar
from keras_se_core.errors import UsageError

#: Keras's own weights files: loaded with ``model.load_weights``.
KERAS_SUFFIXES = (".weights.h5", ".keras", ".h5")
RELEASES = "https://github.com/rwightman/pytorch-image-models/releases/download/"


@dataclasses.dataclass(frozen=True)
class ReferenceSource:
    """A named set of reference weights and what a model needs to use them.

    Attributes:
        name: timm's name, ``"legacy_seresnet50.in1k"``; ``"timm/" + name`` is the hub id.
        model: keras_se registry name of the architecture the weights fit.
        layout: ``"legacy"`` (timm ``senet.py``) or ``"timm"`` (timm ``resnet.py``).
        preprocessing: the evaluation preprocessing the weights were made for.
        url: timm's own PyTorch release file, tried when the hub has no copy.
        groups: the architecture's cardinality (the legacy layout strides in the 3x3
            conv of grouped bottlenecks, in the 1x1 otherwise).
    """

    name: str
    model: str
    layout: str
    preprocessing: Preprocessing
    url: str | None = None
    groups: int = 1

    @property
    def hub_id(self):
        return f"timm/{self.name}"

    def build_options(self):
        """``stride_in_1x1`` and ``stem_pool`` for the model builder."""
        return reference.layout_architecture(self.layout, groups=self.groups)


def timm_preprocessing(size=224, interpolation="bicubic", crop_pct=0.875):
    """timm's evaluation preprocessing (ImageNet mean/std) for a pretrained configuration."""
    return Preprocessing(image_size=(size, size), interpolation=interpolation, crop_pct=crop_pct)


#: timm's default evaluation preprocessing for ImageNet-1k models (most legacy weights).
DEFAULT_PREPROCESSING = timm_preprocessing(interpolation="bilinear")

#: Named sources by timm name, filled by `register_source` (``keras_se.models`` registers
#: each architecture module's ``PRETRAINED`` rows on import).
SOURCES = {}


def register_source(source):
    """Adds a `ReferenceSource`; a name can be registered only once."""
    if source.name in SOURCES and SOURCES[source.name] != source:
        raise UsageError(f"Reference source already registered: name={source.name!r}")
    SOURCES[source.name] = source
    return source


def _source_name(value):
    """The `SOURCES` key for ``value`` (``timm/`` prefix and the tag optional), or None."""
    if not isinstance(value, str):
        return None
    name = value[len("timm/") :] if value.startswith("timm/") else value
    if name in SOURCES:
        return name
    tagged = [key for key in SOURCES if key.split(".")[0] == name]
    return tagged[0] if tagged else None  # the first tag is timm's default


def is_named_source(value):
    """True for a known named source such as ``"timm/legacy_seresnet50.in1k"``."""
    return _source_name(value) is not None


def get_source(name):
    """The `ReferenceSource` for ``name``; a ValueError listing the known ones otherwise."""
    key = _source_name(name)
    if key is None:
        raise UsageError(
            f"Unknown reference weights source. Known: {', '.join('timm/' + k for k in SOURCES)}. "
            f"Received: source={name!r}"
        )
    return SOURCES[key]


def fetch_source(source):
    """Downloads a named source (cached; hub, then timm's release file) → local path."""
    src = get_source(source)
    return reference.download(src.hub_id, url=src.url, label=source)


def is_keras_file(weights):
    return isinstance(weights, (str, os.PathLike)) and os.fspath(weights).endswith(KERAS_SUFFIXES)


def source_architecture(weights):
    """Builder options (``stride_in_1x1``, ``stem_pool``) that ``weights`` requires.

    Named sources know theirs; a timm state dict file says it through its keys; None,
    Keras files and anything unreadable give ``{}``.
    """
    if is_named_source(weights):
        return get_source(weights).build_options()
    if not isinstance(weights, (str, os.PathLike)) or is_keras_file(weights):
        return {}
    return reference.file_architecture(weights)


def reference_preprocessing(source):
    """The `Preprocessing` a named source was made for (timm's default for files)."""
    return get_source(source).preprocessing if is_named_source(source) else DEFAULT_PREPROCESSING


def load_reference_weights(model, source, *, preprocessing=None):
    """Loads a named source or a timm state dict file into ``model``, all or nothing.

    See `keras_se.weights.load_reference_weights` for the checks.

    Args:
        model: a keras_se ResNet/ResNeXt/SENet.
        source: a named source (``"timm/legacy_seresnet50.in1k"``, downloaded) or a
            ``.safetensors``/``.pth``/``.bin`` file.
        preprocessing: the `Preprocessing` to attach; default: the named source's, or
            timm's default ImageNet preprocessing for a file.

    Returns:
        ``model``, its preprocessing recorded (`keras_se.models.preprocessing.of`).
    """
    if is_named_source(source):
        path, hint = fetch_source(source), f" (weights for {get_source(source).model})"
    else:
        path, hint = os.fspath(source), ""
    reference.load_reference_weights(model, path, source=source, hint=hint)
    return attach(model, preprocessing or reference_preprocessing(source))


def load_reference_model(source, *, model=None, **kwargs):
    """Builds the keras_se model for ``source`` and loads the reference weights into it.

    Args:
        source: a named source (``"timm/legacy_seresnet50.in1k"``; downloaded) or a
            state dict file (then ``model`` is required).
        model: keras_se model name (registry); named sources know theirs.
        **kwargs: builder arguments (``include_top``, ``input_shape``, ``pooling``,
            ``classes``...); ``stride_in_1x1``/``stem_pool`` are set to what the weights
            need. With another ``classes`` the classifier starts fresh (one warning).

    Returns:
        The model, its `Preprocessing` recorded (`keras_se.models.preprocessing.of`).

    Example:
        >>> from keras_se.models import preprocessing
        >>> model = load_reference_model("timm/seresnet50.ra2_in1k")  # doctest: +SKIP
        >>> preprocessing.of(model).crop_pct                         # doctest: +SKIP
        0.875
    """
    if is_named_source(source):
        src = get_source(source)
        path = fetch_source(source)  # first: no model is built when the download fails
        built = registry.get(model or src.model, **src.build_options(), **kwargs)
    else:
        if model is None:
            raise UsageError(
                "A weights file needs the keras_se model name (e.g. model='se_resnet50'). "
                f"Received: source={source!r}, model=None"
            )
        path = os.fspath(source)
        options = reference.file_architecture(path)
        if not options:  # not a readable timm state dict: the reader says why
            reference.detect_layout(reference.read_state_dict(path))
        built = registry.get(model, **options, **kwargs)
    load_weights(built, source)  # a fresh classifier when `classes` differs
    return attach(built, reference_preprocessing(source))


# ----------------------------------------------------------------------------- any source into a built model
#: The layer that `load_weights` may start fresh: the classifier of every builder.
HEAD = "predictions"
#: The weights file inside a ``.keras`` archive.
KERAS_ARCHIVE_WEIGHTS = "model.weights.h5"


@dataclasses.dataclass(frozen=True)
class LoadedWeights:
    """What `load_weights` loaded.

    Attributes:
        source: the ``weights`` value as given.
        path: the local file that was read (a named source's downloaded file).
        kind: ``"named"``, ``"state_dict"`` (timm file) or ``"keras"``.
        loaded: names of the layers whose weights were set, in network order.
        skipped: layers left with their fresh weights: ``("predictions",)`` when the
            classifier started fresh, else ``()``.
        source_classes: the weights' class count, or None (no classifier in the file,
            or not known).
        model_classes: the model's class count, or None (no ``predictions`` layer).
        preprocessing: the `Preprocessing` that goes with the weights (a named
            source's, timm's default for a state dict file, a ``.keras`` file's
            sidecar), or None when the source carries none.
        message: the line warned when the classifier started fresh, else None.

    Example:
        >>> info = load_weights(model, "ten_classes.keras")  # doctest: +SKIP
        >>> info.new_head, info.loaded[:2]                   # doctest: +SKIP
        (True, ('conv1_conv', 'conv1_bn'))
    """

    source: str
    path: str
    kind: str
    loaded: tuple
    skipped: tuple
    source_classes: int | None
    model_classes: int | None
    preprocessing: Preprocessing | None
    message: str | None = None

    @property
    def new_head(self):
        """True when the classifier kept its fresh weights."""
        return HEAD in self.skipped


def check_weights_source(weights):
    """Raises a ValueError unless ``weights`` is None, an existing file or a named source.

    The message names ``weights`` and echoes it: a missing file, ``"imagenet"`` (keras_se
    ships none; the named sources are suggested) or anything else.
    """
    if weights is None or is_named_source(weights):
        return
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        return
    text = os.fspath(weights) if isinstance(weights, (str, os.PathLike)) else ""
    looks_like_file = text.endswith(KERAS_SUFFIXES + reference.STATE_DICT_SUFFIXES) or (
        os.sep in text and not text.startswith("timm/")
    )
    if looks_like_file:
        raise ValueError(
            f"`weights` names a file that does not exist: {os.path.abspath(weights)}. "
            f"Received: weights={weights!r}"
        )
    hint = ""
    if weights == "imagenet" or str(weights).startswith("timm/"):
        hint = (
            " keras_se ships no bundled weights; name a reference source instead, e.g. "
            "weights='timm/legacy_seresnet50.in1k' (downloaded, needs network; known: "
            "keras_se.models.SOURCES), or a local .safetensors/.pth file."
        )
    raise ValueError(
        "`weights` must be None (random initialization), the path to an existing "
        f"weights file or a named reference source.{hint} Received: weights={weights!r}"
    )


def _layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def _classes(layer):
    return None if layer is None else int(layer.kernel.shape[-1])


def load_weights(model, source, *, skip_mismatched_head=True):
    """Loads ``source`` into the built ``model``; a fresh classifier when the classes differ.

    Every weight of the model (but the ``predictions`` classifier when its class count
    differs from the weights' and ``skip_mismatched_head`` is set) must be in the source
    with the same shape; otherwise a ValueError names ``weights``, the value and the first
    mismatched layer (layer name, expected vs found shape), and nothing is changed.
    When the classifier starts fresh, one line says so (a ``UserWarning``): "weights have
    1000 classes, model has 5: the backbone is loaded, the classifier starts fresh".
    The source's preprocessing, when it carries one, is recorded for ``model``
    (`keras_se.models.preprocessing.attach`).

    Args:
        model: a built ``keras.Model`` (any keras_se builder's; for ``.weights.h5`` and
            ``.keras`` files any functional model saved with the same layers).
        source: a named source (``"timm/legacy_seresnet50.in1k"``), a timm state dict
            (``.safetensors``/``.pth``/``.bin``), a ``.weights.h5`` or a ``.keras`` file.
        skip_mismatched_head: start the classifier fresh when its class count differs
            (default); False refuses such weights.

    Returns:
        A `LoadedWeights` report (what was loaded and skipped, the class counts, the
        source's preprocessing).

    Example:
        >>> from keras_se import models
        >>> model = models.SEResNet50(classes=5)                               # doctest: +SKIP
        >>> info = models.load_weights(model, "timm/legacy_seresnet50.in1k")    # doctest: +SKIP
        >>> info.new_head, info.preprocessing.crop_pct                         # doctest: +SKIP
        (True, 0.875)
    """
    if source is None:
        raise TypeError("`weights` must be a file path or a named source. Received: weights=None")
    check_weights_source(source)
    shown = source if isinstance(source, str) else os.fspath(source)
    head = _layer(model, HEAD)
    if is_named_source(source):
        ref = get_source(source)
        path = fetch_source(source)
        report = reference.assign_reference_weights(
            model, path, source=shown, hint=f" (weights for {ref.model})",
            skip_mismatched_head=skip_mismatched_head,
        )  # fmt: skip
        kind, preprocessing = "named", ref.preprocessing
        loaded, skipped, source_classes = report.loaded, report.skipped, report.source_classes
    else:
        path = os.fspath(source)
        if path.endswith(reference.STATE_DICT_SUFFIXES):
            report = reference.assign_reference_weights(
                model, path, source=shown, skip_mismatched_head=skip_mismatched_head
            )
            kind, preprocessing = "state_dict", DEFAULT_PREPROCESSING
            loaded, skipped, source_classes = report.loaded, report.skipped, report.source_classes
        elif is_keras_file(path):
            loaded, skipped, source_classes = _load_keras_file(
                model, path, skip_mismatched_head=skip_mismatched_head
            )
            kind, preprocessing = "keras", read_sidecar(path)
        else:
            raise ValueError(
                "`weights` file type not recognised: expected .weights.h5, .keras, "
                f"{', '.join(reference.STATE_DICT_SUFFIXES)} or a named source. "
                f"Received: weights={shown!r}"
            )
    message = None
    if skipped:
        message = (
            f"weights have {source_classes} classes, model has {_classes(head)}: the backbone "
            f"is loaded, the classifier starts fresh (weights={shown!r})"
        )
        warnings.warn(message, UserWarning, stacklevel=2)
    if preprocessing is not None:
        attach(model, preprocessing)
    return LoadedWeights(
        source=shown,
        path=path,
        kind=kind,
        loaded=tuple(loaded),
        skipped=tuple(skipped),
        source_classes=source_classes,
        model_classes=_classes(head),
        preprocessing=preprocessing,
        message=message,
    )


# ----------------------------------------------------------------------------- Keras files
def _snake_case(name):
    """Keras's own naming rule for the weights-file groups (``BatchNormalization`` → ...)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def keras_file_addresses(model):
    """``{layer name: group}`` where Keras 3 stores each top-level layer's variables.

    Keras addresses a functional model's layers by class name, numbered in network
    order (``layers/conv2d``, ``layers/conv2d_1``, ...), not by layer name.
    """
    used, out = {}, {}
    for layer in model.layers:
        name = _snake_case(type(layer).__name__)
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        out[layer.name] = f"layers/{name}"
    return out


def _not_keras(path, why):
    return UsageError(
        f"`weights` is not a readable Keras weights file ({why}). Received: weights={path!r}"
    )


def read_keras_weights(path):
    """``{group: [arrays in variable order]}`` of a ``.weights.h5`` or ``.keras`` file.

    Only groups with variables are listed; a group whose layer holds nested layers is
    listed with ``None``.
    """
    import h5py

    try:
        if path.endswith(".keras"):
            if not zipfile.is_zipfile(path):
                raise _not_keras(path, "not a zip archive; a .keras file is one")
            with zipfile.ZipFile(path) as archive:
                if KERAS_ARCHIVE_WEIGHTS not in archive.namelist():
                    raise _not_keras(path, f"the archive has no {KERAS_ARCHIVE_WEIGHTS}")
                handle = h5py.File(io.BytesIO(archive.read(KERAS_ARCHIVE_WEIGHTS)), "r")
        else:
            handle = h5py.File(path, "r")
    except (OSError, zipfile.BadZipFile) as err:
        raise _not_keras(path, f"{type(err).__name__}: {' '.join(str(err).split())[:200]}") from err
    groups = {}
    with handle:
        if "layers" not in handle:
            raise _not_keras(path, "no 'layers' group: not written by Keras 3 save_weights/save")
        for name, group in handle["layers"].items():
            nested = any(key != "vars" for key in group.keys())
            variables = group.get("vars")
            count = len(variables) if variables is not None else 0
            if nested:
                groups[f"layers/{name}"] = None
            elif count:
                groups[f"layers/{name}"] = [np.asarray(variables[str(i)]) for i in range(count)]
    return groups


def _own_variables(layer):
    store = {}
    layer.save_own_variables(store)
    return [store[str(i)] for i in range(len(store))]


def _shapes(arrays):
    return [tuple(a.shape) for a in arrays]


def _load_keras_file(model, path, *, skip_mismatched_head):
    """Loads a Keras weights file layer by layer, all or nothing → (loaded, skipped, classes)."""
    if path.endswith(".h5") and not path.endswith(".weights.h5"):
        return _load_with_keras(model, path)
    own = {layer.name: _own_variables(layer) for layer in model.layers}
    if any(len(values) != len(layer.weights) for layer, values in
           zip(model.layers, own.values())):  # fmt: skip
        return _load_with_keras(model, path)  # nested models: Keras matches them
    groups = read_keras_weights(path)
    addresses = keras_file_addresses(model)
    head = _layer(model, HEAD)
    head_group = groups.get(addresses[HEAD]) if head is not None else None
    source_classes = int(head_group[0].shape[-1]) if head_group else None
    plan, skipped, problems = [], [], []
    for layer in model.layers:
        expected = own[layer.name]
        if not expected:
            continue
        found = groups.get(addresses[layer.name])
        if found is not None and _shapes(found) == _shapes(expected):
            plan.append((layer, found))
            continue
        if layer is head and skip_mismatched_head and found is not None:
            skipped.append(layer.name)
            continue
        what = "nothing" if found is None else _shapes(found)
        problems.append(f"{layer.name} (expected {_shapes(expected)}, found {what})")
    used = {addresses[layer.name] for layer in model.layers if own[layer.name]}
    unused = sorted(g for g in groups if g not in used)
    if head is None:  # a headless model ignores the file's classifier (a Dense)
        unused = [g for g in unused if not g.startswith("layers/dense")]
    if problems or unused:
        first = problems[0] if problems else f"the file's {unused[0]} has no layer in the model"
        more = f"; {len(problems)} layers differ in all" if len(problems) > 1 else ""
        extra = f"; the file has {len(unused)} unused variable groups" if unused else ""
        raise UsageError(
            f"`weights` do not fit model {model.name!r} (another architecture?): first "
            f"mismatched layer: {first}{more}{extra}. Nothing was loaded. Received: weights={path!r}"
        )
    for layer, values in plan:
        layer.load_own_variables({str(i): v for i, v in enumerate(values)})
    return [layer.name for layer, _ in plan], skipped, source_classes


def _load_with_keras(model, path):
    try:
        model.load_weights(path)
    # ValueError: Keras's shape and count mismatches; OSError: h5py cannot open the file;
    # BadZipFile: a .keras file that is no zip archive. Anything else keeps its traceback.
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise UsageError(
            f"`weights` do not fit model {model.name!r} ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:300]}). Received: weights={path!r}"
        ) from err
    head = _layer(model, HEAD)
    return [layer.name for layer in model.layers if layer.weights], [], _classes(head)
