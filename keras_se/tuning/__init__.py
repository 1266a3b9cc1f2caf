"""Searching the SE reduction ratio with keras-tuner (Hu et al., 2018, Section 6.1, Table 10).

The paper's central ablation varies r ∈ {2, 4, 8, 16, 32} on SE-ResNet-50: accuracy is
about the same down to r = 16 and drops at 32, while parameters fall from 45.7M to
26.8M. Two ways to run the same study:

* **Hypermodels for your own search** (any keras-tuner tuner, any data, any Keras
  backend): `HyperSEResNet`, `HyperSEInception` and `HyperRetrofit` are
  ``keras_tuner.HyperModel`` s in the shape of ``keras_tuner.applications.HyperResNet``:
  ``build(hp)`` returns a compiled model whose hyperparameter ``se_ratio`` (and,
  optionally, ``squeeze``, ``gate``, ``se_mode``, ``learning_rate``; see `SearchSpace`)
  the tuner chooses, and ``tuner.search(x, y, validation_data=..., epochs=...)`` trains it
  with ``model.fit``.
* **`search`** (behind ``keras-se tune``): every trial trains through
  `keras_se.training.train` — the one training path, with its strategies, recipe,
  checkpoints and resume — in ``OUT/tuner/trial_<id>/run``. A killed search rerun with
  the same command keeps every completed trial, resumes the interrupted one from its
  last checkpoint, and runs only the rest. `SETuner` keeps keras-tuner's contract:
  ``get_best_models()`` loads the trials' saved models, and `load_tuner` reopens a
  finished search directory.

keras-tuner 1.4.8's ``GridSearchOracle`` loses its internal order on reload
(keras-team/keras-tuner#1055: ``KeyError`` on the first trial after a resume);
the ``"grid"`` oracle here is `ResumableGridOracle`, which derives the next
combination from the recorded trials alone and therefore survives restarts and
serves distributed workers.

Distributed tuning follows keras-tuner: one chief oracle and N workers, configured
by ``KERASTUNER_TUNER_ID`` (``chief`` / ``tuner0``...), ``KERASTUNER_ORACLE_IP``
and ``KERASTUNER_ORACLE_PORT``; `distributed_env` builds them (loopback by default).

The package: `keras_se.tuning.hypermodels` (the hypermodels and `SearchSpace`),
`keras_se.tuning.tuner` (the trials, oracles and `search` of ``keras-se tune``) and
`keras_se.tuning.results` (the search directory's files and summary); every name below
is importable from ``keras_se.tuning``.

It needs the ``tune`` extra (keras-tuner); `search` also needs TensorFlow
(``pip install 'keras-se[tune]'`` installs both). The hypermodels need only Keras.

Example:
    >>> from keras_se.tuning import SearchSpace
    >>> SearchSpace(ratios=(8, 16), gate=("sigmoid", "hard_sigmoid")).size()
    4
"""

from __future__ import annotations

from keras_se.extras import require

# Checked here, before the submodules: a re-import without keras-tuner names the extra.
require("keras_tuner", feature="keras_se.tuning", extra="tune")

from keras_se.tuning.hypermodels import (  # noqa: E402 (after the extra's check)
    DEFAULT_RATIOS,
    HyperRetrofit,
    HyperSEInception,
    HyperSEResNet,
    SearchSpace,
)
from keras_se.tuning.results import (  # noqa: E402
    OBJECTIVE,
    PROJECT_NAME,
    SEARCH_FILE,
    collect_results,
    format_table,
    trial_model_path,
    trial_run_dir,
    write_results,
)
from keras_se.tuning.tuner import (  # noqa: E402
    ResumableGridOracle,
    SEHyperModel,
    SETuner,
    distributed_env,
    load_tuner,
    make_oracle,
    search,
)

__all__ = [
    "DEFAULT_RATIOS",
    "OBJECTIVE",
    "PROJECT_NAME",
    "SEARCH_FILE",
    "SearchSpace",
    "HyperSEResNet",
    "HyperSEInception",
    "HyperRetrofit",
    "SEHyperModel",
    "SETuner",
    "ResumableGridOracle",
    "make_oracle",
    "search",
    "load_tuner",
    "distributed_env",
    "collect_results",
    "write_results",
    "format_table",
    "trial_run_dir",
    "trial_model_path",
]
