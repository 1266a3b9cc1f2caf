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
"""

from __future__ import annotations

import dataclasses
import os

from keras_se import weights as reference
from keras_se.models import registry
from keras_se.models.preprocessing import Preprocessing
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
        ``model``, with ``model.preprocessing`` set.
    """
    if is_named_source(source):
        path, hint = fetch_source(source), f" (weights for {get_source(source).model})"
    else:
        path, hint = os.fspath(source), ""
    reference.load_reference_weights(model, path, source=source, hint=hint)
    model.preprocessing = preprocessing or reference_preprocessing(source)
    return model


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
        The model, with ``model.preprocessing`` set (see `Preprocessing`).

    Example:
        >>> model = load_reference_model("timm/seresnet50.ra2_in1k")  # doctest: +SKIP
        >>> model.preprocessing.crop_pct                             # doctest: +SKIP
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
    from keras_se.models import loading  # below this module's callers; imports this one

    loading.load_weights(built, source)  # a fresh classifier when `classes` differs
    built.preprocessing = reference_preprocessing(source)
    return built
