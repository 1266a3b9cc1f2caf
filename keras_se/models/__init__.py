"""keras_se model builders and the registry (``keras_se.models.get``, ``names``)."""

from keras_se.models import registry
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
from keras_se.models.registry import builder, get, names, register
from keras_se.models.resnet import (
    BUILDERS as _RESNET_BUILDERS,
)
from keras_se.models.resnet import (
    ResNet18,
    ResNet34,
    ResNet50,
    ResNet101,
    ResNet152,
    ResNeXt50,
    ResNeXt101,
    SEResNet18,
    SEResNet34,
    SEResNet50,
    SEResNet101,
    SEResNet152,
    SEResNeXt50,
    SEResNeXt101,
    build_resnet,
)

for _name, _fn in _RESNET_BUILDERS.items():
    register(_name, _fn)
for _name, _fn in _INCEPTION_BUILDERS.items():
    register(_name, _fn)

__all__ = [
    "get",
    "names",
    "builder",
    "register",
    "registry",
    "build_resnet",
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
