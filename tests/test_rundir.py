"""keras_se.rundir.RunDir: the one owner of a run directory's files."""

from __future__ import annotations

import json
import os

import pytest

from keras_se.rundir import FORMAT_VERSION, RunDir
from keras_se_core.configs import TrainConfig
from keras_se_core.errors import UsageError


def test_history_round_trip_writes_json_and_csv(tmp_path):
    run = RunDir(tmp_path)
    rows = [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}]
    run.write_history(rows)
    assert run.read_history() == rows
    assert open(tmp_path / "history.csv").read().splitlines() == ["epoch,loss", "1,2.0", "2,1.5"]
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]  # no temporary file left


def test_config_carries_the_format_version(tmp_path):
    run = RunDir(tmp_path)
    assert not RunDir.is_run_dir(tmp_path) and run.read_config() == {}
    run.write_config(TrainConfig(model="se_resnet18"), {"num_classes": 10})
    config = json.load(open(tmp_path / "config.json"))
    assert config["format_version"] == FORMAT_VERSION == 2
    assert config["train"]["model"] == "se_resnet18" and config["num_classes"] == 10
    assert RunDir.is_run_dir(tmp_path) and run.saved_train_config()["model"] == "se_resnet18"
    assert RunDir.format_version({}) == 1  # keras_se 0.1 wrote no version


@pytest.mark.parametrize(
    "text, needle",
    [
        ("{", "unreadable"),
        ("[1]", "not a JSON object"),
        ('{"format_version": 7}', "format version 7"),
    ],
)
def test_bad_or_newer_configs_are_refused(tmp_path, text, needle):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(UsageError, match=needle):
        RunDir(tmp_path).read_config()


def test_create_reports_what_it_made_and_removes_only_empty_directories(tmp_path):
    run = RunDir(tmp_path / "a" / "b")
    created = run.create()
    assert created == [str(tmp_path / "a" / "b"), str(tmp_path / "a")]
    RunDir.remove_created(created)
    assert not (tmp_path / "a").exists()
    run.create()
    (tmp_path / "a" / "b" / "keep").write_text("x")
    RunDir.remove_created([str(tmp_path / "a" / "b"), str(tmp_path / "a")])
    assert (tmp_path / "a" / "b" / "keep").exists()


def test_create_refuses_an_unwritable_path():
    with pytest.raises(UsageError, match="out='/proc/keras_se_x'"):
        RunDir("/proc/keras_se_x").create()


def test_excitations_per_epoch(tmp_path):
    run = RunDir(tmp_path)
    for epoch in (3, 1, 10):
        run.write_excitations(epoch, {"epoch": epoch})
    assert run.excitation_epochs() == [1, 3, 10]
    assert json.load(open(run.excitations_path(10))) == {"epoch": 10}


def test_partial_checkpoints_are_removed(tmp_path):
    run = RunDir(tmp_path)
    os.makedirs(os.path.join(run.checkpoint_dir, "ckpt-3_temp"))
    open(os.path.join(run.checkpoint_dir, "ckpt-2.index"), "w").close()
    run.remove_partial_checkpoints()
    assert os.listdir(run.checkpoint_dir) == ["ckpt-2.index"]
