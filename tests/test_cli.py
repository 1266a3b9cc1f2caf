"""The ``keras-se`` launcher (keras_se_core.cli) and commands (keras_se.cli): parsing without
Keras, one-line user errors with exit 2, tracebacks for bugs, missing extras named."""

from __future__ import annotations

import subprocess
import sys

import pytest

from keras_se_core import cli as launcher
from keras_se_core.configs import TrainConfig
from tests import prefork
from tests.conftest import assert_usage_error, run_main

SUBCOMMANDS = (
    "info", "convert", "train", "tune", "bench", "quickstart", "export", "visualize", "predict",
)  # fmt: skip


@pytest.mark.integration
def test_help_imports_neither_keras_nor_tensorflow():
    """``keras-se --help`` and ``keras-se train --help`` parse with the standard library only."""
    code = (
        "import sys\n"
        "from keras_se_core.cli import main\n"
        "for argv in (['--help'], ['train', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'keras_se')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "--checkpoint-every" in result.stdout and "usage: keras-se" in result.stdout


def test_every_subcommand_has_help_and_a_command():
    from keras_se import cli as commands

    parser = launcher.build_parser()
    actions = {a.dest: a for a in parser._subparsers._group_actions}  # argparse keeps them here
    sub = actions["command"]
    assert sorted(sub.choices) == sorted(SUBCOMMANDS)
    for name, p in sub.choices.items():
        assert callable(getattr(commands, "cmd_" + name)), name
        for action in p._actions:  # every flag and positional explains itself
            assert action.help, (name, action.dest)


def test_train_flags_are_the_config_fields():
    """Each CLI field of TrainConfig is a flag whose parsed default equals the field default."""
    args = launcher.build_parser().parse_args(["train"])
    config = TrainConfig.from_args(args)
    assert config == TrainConfig(out="runs/train")
    args = launcher.build_parser().parse_args(
        [
            "train",
            "--lr",
            "0.1",
            "--sync-bn",
            "--checkpoint-every",
            "5",
            "--mixed-precision",
            "bfloat16",
        ]
    )
    config = TrainConfig.from_args(args)
    assert (config.learning_rate, config.sync_bn, config.checkpoint_every) == (0.1, True, 5)
    assert config.mixed_precision == "bfloat16"


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["nope"], ["invalid choice", "'nope'"]),
        (["train", "--epochs", "-3"], ["--epochs", "'-3'"]),
        (["train", "--seed", "1.5"], ["--seed", "'1.5'"]),
        (["tune", "--ratios", "4,inf"], ["--ratios", "'4,inf'"]),
        (["export", "run", "--version", "-1"], ["--version", "'-1'"]),
    ],
)
def test_parser_errors_are_one_line(capsys, argv, needles):
    assert_usage_error(run_main(capsys, *argv), *needles)


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only UsageError is a user mistake; a ValueError from a bug propagates."""
    from keras_se import cli as commands

    def broken(args):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(commands, "cmd_info", broken)
    with pytest.raises(ValueError, match="internal invariant"):
        launcher.main(["info"])


def test_a_missing_extra_is_named(capsys, monkeypatch):
    from keras_se import cli as commands

    def needs_tuner(args):
        raise ModuleNotFoundError("No module named 'keras_tuner'", name="keras_tuner")

    monkeypatch.setattr(commands, "cmd_info", needs_tuner)
    assert_usage_error(run_main(capsys, "info"), "keras_tuner", "keras-se[tune]")


@pytest.mark.slow
def test_python_dash_m_keras_se_cli_still_runs():
    # forked from the preloaded interpreter (tests/prefork.py): keras_se is imported fresh
    result = prefork.run(
        [sys.executable, "-m", "keras_se.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "usage: keras-se" in result.stdout
