"""keras_se_core.errors: the exceptions the CLI prints as one line, and its exit codes."""

from __future__ import annotations

import keras_se
from keras_se_core import errors


def test_usage_error_is_a_value_error_exported_by_the_package():
    assert issubclass(errors.UsageError, ValueError) and keras_se.UsageError is errors.UsageError


def test_missing_extra_names_the_package_and_the_extra():
    err = errors.MissingExtraError("keras-se tune", "tune", "keras_tuner")
    assert isinstance(err, errors.UsageError) and isinstance(err, ImportError)
    assert str(err) == "keras-se tune needs the `keras_tuner` package: pip install 'keras-se[tune]'"


def test_exit_codes():
    assert (errors.EXIT_USAGE, errors.EXIT_PREEMPTED) == (2, 3)
