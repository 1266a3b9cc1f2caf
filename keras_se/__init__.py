"""keras_se: Squeeze-and-Excitation networks for Keras 3 (Hu et al., CVPR 2018).

Importing the package registers its serializable layers and builds the model
registry; it configures no logging and touches no devices.
"""

__version__ = "0.1.0"

from keras_se import models, speed  # speed: registers the layers of files saved by earlier releases
from keras_se.layers import SEGate, SqueezeExcite, se_units
from keras_se.retrofit import add_squeeze_excite
from keras_se_core.errors import UsageError

__all__ = [
    "SqueezeExcite",
    "SEGate",
    "se_units",
    "add_squeeze_excite",
    "UsageError",
    "models",
    "speed",
    "__version__",
]
