"""keras_se.tuning, the package: one import for every public name of its modules
(hypermodels, tuner, results), and the `tune` extra named when keras-tuner is missing."""

from __future__ import annotations

import importlib
import sys

import pytest

from keras_se import tuning
from keras_se.tuning import hypermodels, results, tuner
from keras_se_core.errors import MissingExtraError


def test_every_public_name_is_the_one_of_its_module():
    homes = (hypermodels, tuner, results)
    for name in tuning.__all__:
        owners = [m for m in homes if name in vars(m)]
        assert owners, f"keras_se.tuning.{name} is defined in none of its modules"
        assert getattr(tuning, name) is getattr(owners[0], name)
    # The names the CLI, the notebook and the docs use from keras_se.tuning.
    used = {"search", "SearchSpace", "distributed_env", "format_table", "load_tuner",
            "HyperSEResNet", "HyperSEInception", "HyperRetrofit", "ResumableGridOracle",
            "SEHyperModel", "SETuner", "make_oracle", "collect_results", "write_results",
            "trial_run_dir", "trial_model_path", "DEFAULT_RATIOS", "SEARCH_FILE"}  # fmt: skip
    assert used <= set(tuning.__all__)
    assert callable(tuning.search)  # the function, not a module of that name


def test_tuning_without_keras_tuner_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_tuner", None)  # "not installed"
    monkeypatch.delitem(sys.modules, "keras_se.tuning")
    with pytest.raises(MissingExtraError, match=r"pip install 'keras-se\[tune\]'") as info:
        importlib.import_module("keras_se.tuning")
    assert (info.value.extra, info.value.module) == ("tune", "keras_tuner")
