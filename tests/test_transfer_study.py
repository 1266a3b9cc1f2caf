"""scripts/transfer_study.py: the issue-27 transfer study (scratch / fine-tune / retrofit SE)."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K, BATCH, EPOCHS = 3, 5, 1  # one epoch per arm: the table, not the accuracy, is tested


def _script():
    path = os.path.join(ROOT, "scripts", "transfer_study.py")
    spec = importlib.util.spec_from_file_location("transfer_study", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "flag", ["--k", "--epochs", "--batch-size", "--image-size", "--validation-steps"]
)
def test_non_positive_settings_are_refused(flag, capsys):
    with pytest.raises(SystemExit) as stop:
        _script().main([flag, "0", "--out", "unused"])
    assert stop.value.code == 2 and flag in capsys.readouterr().err


def test_few_shot_folder_has_k_per_class_and_the_rest_as_validation(tmp_path):
    from sklearn.datasets import load_digits

    script = _script()
    images, labels = script.digit_images(8)
    sizes = script.write_few_shot_folder(str(tmp_path / "few"), images, labels, k=K, seed=1)
    target = load_digits().target
    for digit in range(5, 10):
        train = os.listdir(tmp_path / "few" / "train" / str(digit))
        val = os.listdir(tmp_path / "few" / "val" / str(digit))
        assert len(train) == K and len(val) == int(np.sum(target == digit)) - K
        assert not set(train) & set(val)
    assert not (tmp_path / "few" / "train" / "0").exists()
    assert sizes["val"] == int(np.sum(target >= 5)) - 5 * K
    # The draw depends on the seed, and only on it (an existing folder is not rewritten).
    again = script.write_few_shot_folder(str(tmp_path / "few"), images, labels, k=K, seed=1)
    other = script.write_few_shot_folder(str(tmp_path / "few"), images, labels, k=K, seed=2)
    assert again["train_ids"] == sizes["train_ids"] != other["train_ids"]


@pytest.mark.slow
@pytest.mark.integration
def test_study_runs_three_arms_and_writes_the_table(tmp_path, capsys):
    import keras

    from keras_se import finetune
    from keras_se.layers import SqueezeExcite

    out = str(tmp_path / "study")
    argv = ["--out", out, "--seeds", "0", "--k", str(K), "--image-size", "16"]
    argv += ["--epochs", str(EPOCHS), "--pre-epochs", "1", "--batch-size", str(BATCH)]
    # Smoke sizes: pretraining in 7 steps of 128, every evaluation on its first batch (the whole
    # few-shot split is ~880 images, 177 batches of 5 per epoch and arm).
    argv += ["--pre-batch-size", "128", "--validation-steps", "1"]
    assert _script().main(argv) == 0
    printed = capsys.readouterr().out
    with open(os.path.join(out, "transfer.json")) as f:
        results = json.load(f)
    with open(os.path.join(out, "transfer.md")) as f:
        markdown = f.read()
    assert set(results["table"]) == {"scratch", "finetune", "retrofit"}
    for arm, row in results["table"].items():
        assert 0.0 <= row["mean"] <= 1.0 and row["sd"] == 0.0
        assert row["per_seed"]["0"] == row["mean"]
        assert f"| {arm} | {row['mean']:.4f} ± 0.0000 |" in markdown
    assert "classifier is loaded too" in markdown and "--k 3" in results["command"]
    assert "--validation-steps 1" in results["command"] and "first 1 batches only" in markdown
    assert results["command"] in printed
    # Equal optimizer steps: (5 classes x K images // batch) steps per epoch, every arm.
    assert {r["optimizer_steps"] for r in results["runs"]} == {(5 * K // BATCH) * EPOCHS}

    runs = {r["arm"]: r for r in results["runs"]}
    finetuned = keras.models.load_model(runs["finetune"]["model_path"])
    retrofitted = keras.models.load_model(runs["retrofit"]["model_path"])
    residual_additions = sum(isinstance(x, keras.layers.Add) for x in finetuned.layers)
    assert residual_additions == 9  # resnet20_cifar: 3 stages x 3 basic blocks
    assert not finetune.se_layers_of(finetuned)
    se = [x for x in retrofitted.layers if isinstance(x, SqueezeExcite)]
    assert len(se) == residual_additions == runs["retrofit"]["se_layers"]
    assert runs["finetune"]["se_layers"] == runs["scratch"]["se_layers"] == 0
    # (b) and (c) start from the pretrained model; (a) does not.
    configs = {}
    for arm, run in runs.items():
        with open(os.path.join(run["run_dir"], "config.json")) as f:
            configs[arm] = json.load(f)
    pretrained = results["pretraining"]["model_path"]
    train_config = {arm: c.get("train", c) for arm, c in configs.items()}
    assert train_config["finetune"]["weights"] == pretrained == train_config["retrofit"]["weights"]
    assert train_config["scratch"]["weights"] is None and train_config["retrofit"]["retrofit"]

    # --table-only rebuilds the same table from transfer.json.
    assert _script().main(["--out", out, "--table-only"]) == 0
    with open(os.path.join(out, "transfer.md")) as f:
        assert f.read().split("Reproduce:")[0] == markdown.split("Reproduce:")[0]
