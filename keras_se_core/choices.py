"""The choices and constants shared by several keras_se modules: the one place for each.

Stdlib only, so the ``keras-se`` argument parser can offer them without importing
Keras. The paper's words are used for the names (Hu et al., 2018): the *squeeze*
(Sec. 3.1), the *gate* of the excitation (Sec. 3.2), the SE *integration* modes of
the ablation (Sec. 6.5, Fig. 5).
"""

from __future__ import annotations

#: SE block integration (paper Fig. 5): on the residual branch before the addition,
#: before the unit, after the addition, in parallel on the identity branch.
SE_MODES = ("standard", "pre", "post", "identity")
#: Squeeze operator (paper Sec. 6.2: average slightly better than max).
SQUEEZES = ("avg", "max")
#: Excitation gates searched by the tuner (paper Sec. 6.3: sigmoid best).
GATES = ("sigmoid", "hard_sigmoid")
#: The paper's default reduction ratio and the ratios of its ablation (Table 10).
DEFAULT_RATIO = 16
ABLATION_RATIOS = (2, 4, 8, 16, 32)

#: tf.distribute strategies of `keras-se train` ("auto" picks one from the hardware).
STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker", "tpu")
#: Learning-rate schedules: the paper's step decay, or cosine with warm-up.
SCHEDULES = ("step", "cosine")
#: Mixed-precision policies (the classifier head stays float32).
PRECISIONS = ("float16", "bfloat16")
#: keras-tuner oracles of `keras-se tune`.
ORACLES = ("grid", "random", "bayesian", "hyperband")
#: The paper's learning-rate scaling: 0.6 for a global batch of 1024.
REFERENCE_BATCH, REFERENCE_LR = 1024, 0.6

#: Data formats of Keras image layers.
DATA_FORMATS = ("channels_last", "channels_first")
