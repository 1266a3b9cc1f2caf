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
#: PyTorch's (and the Caffe ports') BatchNorm epsilon and momentum (0.1 there, the Keras way
#: here): keras_se's blocks use them and reference weights need the epsilon
#: (keras.applications uses 1.001e-5).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9

#: tf.distribute strategies of `keras-se train` ("auto" picks one from the hardware).
STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker", "tpu")
#: Learning-rate schedules: the paper's step decay (x0.1 every ``step_epochs``), cosine with
#: warm-up, or He et al.'s CIFAR multistep (x0.1 at 50 % and 75 % of the epochs).
SCHEDULES = ("step", "cosine", "multistep")
#: Fractions of the epochs where the multistep schedule divides the learning rate by 10.
MULTISTEP_MILESTONES = (0.5, 0.75)
#: Mixed-precision policies (the classifier head stays float32).
PRECISIONS = ("float16", "bfloat16")
#: keras-tuner oracles of `keras-se tune`.
ORACLES = ("grid", "random", "bayesian", "hyperband")
#: The paper's learning-rate scaling: 0.6 for a global batch of 1024.
REFERENCE_BATCH, REFERENCE_LR = 1024, 0.6
#: Fine-tuning pretrained weights (``--weights``) defaults to this fraction of that rate.
FINE_TUNE_LR_FACTOR = 0.1

#: Data formats of Keras image layers.
DATA_FORMATS = ("channels_last", "channels_first")

#: Training recipes (``keras-se train --recipe NAME``): settings applied before the flags,
#: so an explicit flag still wins. "imagenet" is the paper's (the `TrainConfig` defaults);
#: "cifar" is He et al.'s CIFAR recipe used by the paper's CIFAR experiments: SGD momentum
#: 0.9, lr 0.1, weight decay 1e-4, batch 128, x0.1 at 50 % and 75 % of 164 epochs (the
#: pad-4 random crop + horizontal flip is what keras_se.data does for 32-pixel images).
RECIPES = {
    "imagenet": {},
    "cifar": dict(
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        batch_size=128,
        epochs=164,
        schedule="multistep",
    ),
}

#: Optional packages → the pip extra that installs them (setup.cfg's extras_require): the one
#: table the CLI and `keras_se.extras.require` name extras from.
EXTRAS = {
    "tensorflow": "tensorflow",
    "tensorflow_datasets": "tensorflow",
    "sklearn": "tensorflow",
    "tensorboard": "tensorflow",
    "keras_tuner": "tune",
    "tensorflow_serving": "serve",
    "matplotlib": "analysis",
    "torch": "torch",
    "huggingface_hub": "hub",
}
