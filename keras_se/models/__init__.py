"""keras_se model builders and the registry (``keras_se.models.get``, ``names``).

A model's `Preprocessing` is recorded beside it: ``keras_se.models.preprocessing.of(model)``.
"""

from keras_se.models import preprocessing, pretrained, registry
from keras_se.models.cifar import (
    BUILDERS as _CIFAR_BUILDERS,
)
from keras_se.models.cifar import (
    ResNet20,
    ResNet32,
    ResNet56,
    ResNet110,
    ResNet164,
    SEResNet20,
    SEResNet32,
    SEResNet56,
    SEResNet110,
    SEResNet164,
    SEWideResNet16_8,
    WideResNet16_8,
    build_cifar_resnet,
)
from keras_se.models.imagenet import decode_predictions, preprocess_input
from keras_se.models.inception import (
    BUILDERS as _INCEPTION_BUILDERS,
)
from keras_se.models.inception import (
    InceptionResNetV2,
    InceptionV3,
    SEInceptionResNetV2,
    SEInceptionV3,
    build_inception_resnet_v2,
    build_inception_v3,
)
from keras_se.models.preprocessing import Preprocessing
from keras_se.models.pretrained import LoadedWeights, load_weights
from keras_se.models.registry import builder, get, names, register
from keras_se.models.resnet import (
    BUILDERS as _RESNET_BUILDERS,
)
from keras_se.models.resnet import (
    PRETRAINED as _RESNET_PRETRAINED,
)
from keras_se.models.resnet import (
    ResNet18,
    ResNet34,
    ResNet50,
    ResNet101,
    ResNet152,
    ResNeXt50,
    ResNeXt101,
    ResNeXt101_32x8d,
    ResNeXt101_64x4d,
    SENet154,
    SEResNet18,
    SEResNet34,
    SEResNet50,
    SEResNet101,
    SEResNet152,
    SEResNeXt26,
    SEResNeXt50,
    SEResNeXt101,
    SEResNeXt101_32x8d,
    SEResNeXt101_64x4d,
    build_resnet,
)

for _name, _fn in _RESNET_BUILDERS.items():
    register(_name, _fn)
for _name, _fn in _INCEPTION_BUILDERS.items():
    register(_name, _fn)
for _name, _fn in _CIFAR_BUILDERS.items():
    register(_name, _fn)
for _source in _RESNET_PRETRAINED:
    pretrained.register_source(_source)

__all__ = [
    "get",
    "names",
    "builder",
    "register",
    "registry",
    "build_resnet",
    "pretrained",
    "load_weights",
    "LoadedWeights",
    "Preprocessing",
    "preprocessing",
    "preprocess_input",
    "decode_predictions",
    "SEResNeXt26",
    "SEResNeXt101_32x8d",
    "SEResNeXt101_64x4d",
    "SENet154",
    "ResNeXt101_32x8d",
    "ResNeXt101_64x4d",
    "build_cifar_resnet",
    "SEResNet20",
    "SEResNet32",
    "SEResNet56",
    "SEResNet110",
    "SEResNet164",
    "SEWideResNet16_8",
    "ResNet20",
    "ResNet32",
    "ResNet56",
    "ResNet110",
    "ResNet164",
    "WideResNet16_8",
    "SEResNet18",
    "SEResNet34",
    "SEResNet50",
    "SEResNet101",
    "SEResNet152",
    "SEResNeXt50",
    "SEResNeXt101",
    "ResNet18",
    "ResNet34",
    "ResNet50",
    "ResNet101",
    "ResNet152",
    "ResNeXt50",
    "ResNeXt101",
    "build_inception_v3",
    "build_inception_resnet_v2",
    "SEInceptionV3",
    "InceptionV3",
    "SEInceptionResNetV2",
    "InceptionResNetV2",
]
