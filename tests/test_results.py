"""keras_se.tuning.results: the search directory's layout, its recorded settings, and the
summary of a search (results.json/.csv, the table, the trials' rows best first)."""

from __future__ import annotations

import csv
import json
import os

import pytest

from keras_se.tuning import SearchSpace, make_oracle, results


def _row(trial_id, ratio, accuracy, *, status="COMPLETED", specificity=None):
    return {
        "trial_id": trial_id,
        "hyperparameters": {"se_ratio": ratio},
        "best_val_accuracy": accuracy,
        "final_val_accuracy": accuracy,
        "params": 1000 + ratio,
        "macs": 2_000_000_000,
        "time_per_step_s": 0.25,
        "status": status,
        **({"specificity": specificity} if specificity is not None else {}),
    }


def test_layout_names_the_trial_run_and_its_model():
    project = os.path.join("runs", "tune", results.PROJECT_NAME)
    assert results.trial_run_dir(project, "07") == os.path.join(project, "trial_07", "run")
    assert results.trial_model_path(project, "07") == os.path.abspath(
        os.path.join(project, "trial_07", "run", "model.keras")
    )


def test_settings_round_trip_and_a_directory_without_a_search_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a search directory") as err:
        results.read_settings(tmp_path)
    assert f"out={str(tmp_path)!r}" in str(err.value)
    settings = {"oracle": "grid", "max_trials": 4, "space": SearchSpace().to_dict(), "train": {}}
    results.write_settings(str(tmp_path), settings)
    with pytest.raises(ValueError, match="not a search directory"):  # no oracle yet
        results.read_settings(tmp_path)
    (tmp_path / results.PROJECT_NAME).mkdir()
    (tmp_path / results.PROJECT_NAME / "oracle.json").write_text("{}")
    read, path = results.read_settings(tmp_path)
    assert read == settings and path == os.path.join(str(tmp_path), results.SEARCH_FILE)


def test_collect_results_reads_the_oracle_best_first(tmp_path):
    oracle = make_oracle("grid", SearchSpace(ratios=(4, 8, 16)))
    oracle._set_project_dir(str(tmp_path), results.PROJECT_NAME)
    for accuracy in (0.5, 0.75):
        trial = oracle.create_trial("tuner0")
        oracle.update_trial(
            trial.trial_id, {"val_accuracy": accuracy, "params": 1234.0, "time_per_step_s": 0.5}
        )
        trial.status = "COMPLETED"  # what the tuner sets before ending a trial
        oracle.end_trial(trial)
    running = oracle.create_trial("tuner0")  # no metrics yet: last
    rows = results.collect_results(oracle, str(tmp_path))
    assert [(r["hyperparameters"], r["best_val_accuracy"], r["status"]) for r in rows] == [
        ({"se_ratio": 8}, 0.75, "COMPLETED"),
        ({"se_ratio": 4}, 0.5, "COMPLETED"),
        ({"se_ratio": 16}, None, "RUNNING"),
    ]
    assert rows[0]["params"] == 1234 and isinstance(rows[0]["params"], int)
    assert rows[0]["macs"] is None and rows[0]["time_per_step_s"] == 0.5
    assert rows[2]["run_dir"] == os.path.join(
        str(tmp_path), results.PROJECT_NAME, f"trial_{running.trial_id}", "run"
    )
    assert "specificity" not in rows[0]  # no excitation analysis in the trial's run


def test_write_results_files_and_format_table(tmp_path):
    rows = [
        _row("1", 16, 0.9, specificity=[0.5, None]),
        _row("0", 4, 0.8),
        _row("2", 32, None, status="RUNNING"),
    ]
    results.write_results(rows, str(tmp_path))
    assert json.loads((tmp_path / "results.json").read_text()) == rows
    with open(tmp_path / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["trial_id"], r["se_ratio"], r["status"]) for r in table] == [
        ("1", "16", "COMPLETED"),
        ("0", "4", "COMPLETED"),
        ("2", "32", "RUNNING"),
    ]
    assert table[0]["specificity"] == "0.5000 nan" and table[1]["specificity"] == ""
    for ext in ("png", "svg"):  # a completed trial: the trade-off figure
        assert os.path.getsize(tmp_path / f"ratio_tradeoff.{ext}") > 1000

    lines = results.format_table(rows).splitlines()
    assert len(lines) == 4 and lines[0].split()[:3] == ["trial", "hyperparameters", "val_acc"]
    assert lines[1].split() == [
        "1",
        "se_ratio=16",
        "0.9000",
        "1,016",
        "2.000",
        "0.250",
        "COMPLETED",
    ]
    assert lines[3].split() == ["2", "se_ratio=32", "-", "1,032", "2.000", "0.250", "RUNNING"]
