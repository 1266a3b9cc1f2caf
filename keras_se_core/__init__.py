"""The stdlib-only base of keras_se: what must import without Keras or TensorFlow.

``keras_se`` imports Keras at package import (it registers its layers, so that
``keras.models.load_model`` finds them). The pieces below are needed *before* that,
by the ``keras-se`` launcher (``--help`` in well under a second, no TensorFlow
start-up lines), or are facts shared by several ``keras_se`` modules:

* `keras_se_core.choices`: the one place for shared choices (SE modes, squeezes,
  gates, strategies, schedules, oracles...) and constants.
* `keras_se_core.validation`: one argument check per kind, in Keras's wording.
* `keras_se_core.fileio`: atomic writes (write to a temporary file, then rename).
* `keras_se_core.errors`: `UsageError` (a user mistake: one line, exit 2) and
  `MissingExtraError` (an optional extra is not installed).

Import direction: ``keras_se_core`` never imports ``keras_se`` at module level;
``keras_se`` modules import from here.
"""

from keras_se_core.errors import MissingExtraError, UsageError

__all__ = ["UsageError", "MissingExtraError"]
