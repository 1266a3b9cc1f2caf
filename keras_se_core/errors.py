"""The two error types the ``keras-se`` command line turns into one line and exit 2."""

from __future__ import annotations

#: Exit code of user mistakes (argparse's own convention): one ``error:`` line.
EXIT_USAGE = 2
#: Exit code of a run stopped by SIGTERM (preemption) after its checkpoint was saved.
EXIT_PREEMPTED = 3


class UsageError(ValueError):
    """A user mistake: a bad argument, an unusable path, a wrong run directory.

    Library functions raise it (it is a `ValueError`, so Python callers catch it as
    one) with a message that names the argument and the received value. The CLI prints
    exactly these as ``error: <message>`` and exits with code 2; any other exception
    is a bug and keeps its traceback.

    Example:
        >>> raise UsageError("`epochs` must be a positive integer. Received: epochs=0")
        Traceback (most recent call last):
        ...
        keras_se_core.errors.UsageError: `epochs` must be a positive integer. Received: epochs=0
    """


class MissingExtraError(UsageError, ImportError):
    """An optional dependency of a feature is not installed; names the pip extra."""

    def __init__(self, feature, extra, module):
        self.feature, self.extra, self.module = feature, extra, module
        super().__init__(f"{feature} needs the `{module}` package: pip install 'keras-se[{extra}]'")
