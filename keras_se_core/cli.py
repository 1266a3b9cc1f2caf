"""The ``keras-se`` launcher: parses the command line, then runs one library call.

Parsing imports only the standard library (``--help`` prints in a fraction of a
second, without TensorFlow's start-up lines); Keras, TensorFlow and keras_se are
imported only when a command runs (`keras_se.cli` holds the commands).

Exit codes: 0 success; 2 a user mistake — argparse errors and `UsageError` (bad flags,
unknown names, unusable paths, a missing optional extra), printed as one ``error:``
line; 3 a run stopped by SIGTERM after saving a checkpoint (rerun to resume); any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from keras_se_core import choices
from keras_se_core import validation as v
from keras_se_core.configs import GROUPS, TrainConfig
from keras_se_core.errors import EXIT_PREEMPTED, EXIT_USAGE, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def _flag_type(check, kind):
    """An argparse ``type``: text → ``kind`` → the config field's own check."""

    def parse(text):
        try:
            value = kind(text)
            return check("value", value) if check else value
        except (ValueError, TypeError) as err:
            what = str(err).split(". Received")[0].replace("`value` ", "")
            if isinstance(err, UsageError):
                raise argparse.ArgumentTypeError(f"{what}, got {text!r}") from None
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _field_kind(field):
    """``int``/``float``/``str``/``bool`` from a field's annotation (``"int | None"``...)."""
    name = str(field.type).split("|")[0].strip()
    return {"int": int, "float": float, "bool": bool}.get(name, str)


def add_config_arguments(parser, config_class=TrainConfig, *, defaults=None):
    """Adds one flag per CLI field of ``config_class``, grouped as in `GROUPS`.

    ``defaults`` overrides field defaults for this parser (e.g. ``out``).
    """
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for field in config_class.cli_fields():
        meta = field.metadata
        flag = meta.get("flag") or "--" + field.name.replace("_", "-")
        default = (defaults or {}).get(field.name, field.default)
        kind = _field_kind(field)
        help_text = meta.get("help", "")
        target = groups.get(meta.get("group"), parser)
        if kind is bool:
            target.add_argument(flag, dest=field.name, action="store_true", help=help_text)
            continue
        check = meta.get("check")
        options = getattr(check, "keywords", {}).get("choices")
        kwargs = dict(dest=field.name, default=default, metavar=meta.get("metavar"))
        if meta.get("const") is not None:
            kwargs.update(nargs="?", const=meta["const"])
        if options:
            kwargs["choices"] = [o for o in options if o is not None]
        else:
            kwargs["type"] = _flag_type(check, kind)
        if default is not None:
            help_text += "; default %(default)s"
        target.add_argument(flag, help=help_text, **kwargs)


def _positive_list(text):
    try:
        values = tuple(
            float(x) if "." in x or "e" in x else int(x) for x in text.split(",") if x.strip()
        )
        for x in values:
            v.check_positive_number("value", x)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive numbers, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive numbers, got {text!r}")
    return values


def _subset(allowed):
    def parse(text):
        values = tuple(x.strip() for x in text.split(",") if x.strip())
        if not values or any(x not in allowed for x in values):
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated subset of {','.join(allowed)}, got {text!r}"
            )
        return values

    return parse


def _comma_list(text):
    return [item.strip() for item in text.split(",") if item.strip()]


_positive_int = _flag_type(v.check_positive_int, int)


# ----------------------------------------------------------------------------- subcommands
def _info(sub):
    p = sub.add_parser(
        "info", help="versions, Keras backend, devices, registered models and layers"
    )
    p.add_argument("--no-devices", action="store_true", help="skip listing devices (faster)")


def _convert(sub):
    p = sub.add_parser(
        "convert", help="reference (timm) ImageNet weights -> .keras model + preprocessing JSON"
    )
    p.add_argument(
        "source",
        help="timm state dict (.safetensors/.pth/.bin) or a named source, e.g. "
        "timm/legacy_seresnet50.in1k (downloaded: needs network and keras-se[hub])",
    )
    p.add_argument("--model", help="keras_se model name (needed for files; sources know theirs)")
    p.add_argument("--out", required=True, help="output .keras file")
    p.add_argument("--no-top", action="store_true", help="drop the ImageNet classifier")


def _train(sub):
    p = sub.add_parser(
        "train",
        help="train a registry model (tf.distribute: one device, mirrored, multi-worker, TPU)",
        description="Train a keras_se model. Rerunning the same command with the same --out "
        "resumes from the last checkpoint (epoch end, or a step with --checkpoint-every). "
        f"SIGTERM saves a checkpoint at the next step and exits with code {EXIT_PREEMPTED}.",
    )
    _training_flags(p, out="runs/train")


def _training_flags(p, *, out):
    p.add_argument(
        "--recipe",
        choices=sorted(choices.RECIPES),
        help="start from a recipe's settings (explicit flags still win): imagenet = the paper's "
        "(the defaults); cifar = He et al.'s CIFAR recipe (lr 0.1, batch 128, 164 epochs, x0.1 at "
        "50 %% and 75 %%, momentum 0.9, weight decay 1e-4)",
    )
    add_config_arguments(p)
    p.add_argument(
        "--out",
        default=out,
        help="run directory (rerun the same command to resume); default %(default)s",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _tune(sub):
    p = sub.add_parser(
        "tune",
        help="keras-tuner search of the SE reduction ratio (and squeeze, gate, SE mode, lr)",
        description="Search the SE reduction ratio as in the paper's ablation. Rerunning the same "
        "command with the same --out resumes: completed trials are kept and only the rest run. "
        "Writes results.json, results.csv, ratio_tradeoff.png/.svg, best_model.keras and a "
        "SavedModel of the best model.",
    )
    _training_flags(p, out="runs/tune")
    g = p.add_argument_group("search")
    g.add_argument(
        "--ratios",
        type=_positive_list,
        default=None,  # None: the paper's ratios, unless --space gives the space
        help="reduction ratios; default " + ",".join(map(str, choices.ABLATION_RATIOS)),
    )
    g.add_argument(
        "--squeeze", type=_subset(choices.SQUEEZES), help="also search the squeeze, e.g. avg,max"
    )
    g.add_argument("--gate", type=_subset(choices.GATES), help="also search the gate")
    g.add_argument(
        "--se-mode", type=_subset(choices.SE_MODES), help="also search the SE integration"
    )
    g.add_argument("--lrs", type=_positive_list, help="also search learning rates, e.g. 0.01,0.05")
    g.add_argument(
        "--space",
        help="a JSON/YAML search-space file (instead of the flags above; not together with them)",
    )
    g.add_argument("--oracle", choices=choices.ORACLES, default="grid", help="default grid")
    g.add_argument(
        "--max-trials", type=_positive_int, help="cap on trials (default: the grid size)"
    )
    g.add_argument(
        "--no-export", action="store_true", help="do not export the best model as a SavedModel"
    )
    g = p.add_argument_group("distributed tuning (one chief oracle, N workers)")
    g.add_argument("--distributed", choices=["chief", "worker"], help="this process's role")
    g.add_argument(
        "--oracle-address", default="127.0.0.1", help="the chief's address; default %(default)s"
    )
    g.add_argument("--oracle-port", type=_positive_int, help="the chief's port")
    g.add_argument(
        "--worker-index", type=int, default=0, help="a unique index per worker; default %(default)s"
    )


def _bench(sub):
    p = sub.add_parser(
        "bench",
        help="what SE costs: SE-ResNet-50 vs ResNet-50 and the SE layer, measured side by side",
        description="Interleaved A/B timings after warm-up; medians, min-max and ratios against the goals.",
    )
    p.add_argument(
        "--quick", action="store_true", help="small sizes, few repetitions (a smoke test)"
    )
    p.add_argument("--out", help="write the JSON report here")
    p.add_argument(
        "--markdown", help="write the table into this markdown file (e.g. BENCHMARKS.md)"
    )
    p.add_argument("--no-jax", action="store_true", help="skip the figures under the JAX backend")
    p.add_argument(
        "--device",
        choices=["cpu", "gpu"],
        default="cpu",
        help="gpu: mixed precision + XLA images/s, SE-ResNet-50 vs ResNet-50, batch 64, on the active "
        "backend (KERAS_BACKEND=jax works without TensorFlow)",
    )
    p.add_argument(
        "--only",
        help="comma-separated figure groups: layer, models, pipeline, memory, training, jax, peer, "
        "bf16 (default: all but peer and bf16)",
    )
    p.add_argument(
        "--peer",
        choices=["timm"],
        help="keras_se vs timm on PyTorch (needs torch and timm: pip install torch timm); alone, "
        "that comparison only",
    )
    p.add_argument(
        "--peer-python",
        help="the Python with torch and timm that runs the PyTorch side; default this one, "
        "else $KERAS_SE_PEER_PYTHON",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        help="intra-op threads on both sides of --peer; default all CPUs",
    )
    p.add_argument("--quiet", action="store_true", help="no progress messages")


def _quickstart(sub):
    p = sub.add_parser(
        "quickstart",
        help="train a small SE-ResNet on the embedded digits, then export and visualise it",
        description="The whole product on the embedded digits (no network): trains the quickstart "
        "recipe, exports a SavedModel for TF Serving and draws the excitation figures.",
    )
    p.add_argument(
        "--out",
        default="runs/quickstart",
        help="output directory (run, export, figures); default %(default)s",
    )
    p.add_argument(
        "--epochs", type=_positive_int, default=None, help="override the quickstart recipe's epochs"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _export(sub):
    p = sub.add_parser(
        "export", help="SavedModel for TF Serving: BASE/NAME/VERSION/, written atomically"
    )
    p.add_argument(
        "source", metavar="RUN_DIR_OR_MODEL", help="training run directory or .keras file"
    )
    p.add_argument(
        "--base", default="models", help="TF Serving base directory; default %(default)s"
    )
    p.add_argument("--name", help="model name (default: the run's model name or the file's stem)")
    p.add_argument(
        "--version",
        type=_flag_type(lambda name, value: v.check_int(name, value, minimum=0), int),
        help="TF Serving version number, an integer >= 0 (default: the highest existing plus one)",
    )
    p.add_argument(
        "--with-excitations", action="store_true", help="add the `excitations` signature"
    )
    p.add_argument("--top-k", type=int, metavar="K", help="add top_k_* outputs with K classes")
    p.add_argument(
        "--dynamic-size", action="store_true", help="accept any H/W; resize inside the graph"
    )
    p.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        default="float32",
        help="what the served graph computes in: float32, or bfloat16 (mixed_bfloat16 rebuild, "
        "same weights; classifier and outputs float32; faster only on CPUs with AMX or "
        "AVX512_BF16, and GPUs); default %(default)s",
    )


def _visualize(sub):
    p = sub.add_parser(
        "visualize",
        help="excitation analysis of the SE blocks: JSON, figures and a specificity table",
        description="Per-class mean excitations and class-specificity of every SE block over a "
        "dataset split, the paper's excitation-by-depth figure, specificity by depth and a "
        "walkthrough of one SE block on one image (PNG + SVG).",
    )
    p.add_argument(
        "source",
        metavar="MODEL_OR_RUN_DIR",
        help="training run directory, .keras file, or a registry name (untrained: mechanics only)",
    )
    p.add_argument(
        "--dataset", help="digits, a TFDS name or an image folder (default: the run's, else digits)"
    )
    p.add_argument("--out", default="figures", help="output directory; default %(default)s")
    p.add_argument(
        "--split",
        choices=["validation", "train"],
        default="validation",
        help="the dataset split whose images are analysed; default %(default)s",
    )
    p.add_argument(
        "--blocks",
        type=_comma_list,
        help="comma-separated SE blocks (layer names, SE_<stage>_<index> or depths); default: "
        "analyse all, draw the last block of each stage and the final blocks",
    )
    p.add_argument(
        "--classes",
        type=_comma_list,
        help="comma-separated class indices or names to draw (at most 5; default: 5 spread out)",
    )
    p.add_argument(
        "--image-index", type=int, default=0, help="walkthrough image in the split; default 0"
    )
    p.add_argument(
        "--walkthrough-block", help="SE block of the walkthrough (default: a middle one)"
    )
    p.add_argument("--batch-size", type=_positive_int, default=64, help="default %(default)s")
    p.add_argument("--max-images", type=_positive_int, help="analyse at most N images of the split")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _predict(sub):
    p = sub.add_parser(
        "predict",
        help="top-k classes of image files with a trained model and its own preprocessing",
        description="Classify images with a training run directory, a .keras file or a "
        "SavedModel from keras-se export, using the model's own preprocessing and class names "
        "(ImageNet names for 1000-class models without names). Unreadable images are named "
        "on stderr and skipped.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files or directories")
    p.add_argument(
        "--model",
        required=True,
        help="training run directory, .keras file, or SavedModel directory (keras-se export)",
    )
    p.add_argument(
        "--top-k", type=_positive_int, default=5, metavar="K", help="classes per image; default 5"
    )
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


SUBCOMMANDS = (
    _info,
    _convert,
    _train,
    _tune,
    _bench,
    _quickstart,
    _export,
    _visualize,
    _predict,
)


def build_parser():
    """The ``keras-se`` argument parser (standard library only)."""
    parser = _Parser(
        prog="keras-se",
        description="Squeeze-and-Excitation networks for Keras 3: build, train, tune, export, analyse.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in SUBCOMMANDS:
        add(sub)
    parser.subcommands = sub.choices
    return parser


def parse_args(argv=None):
    """Parses ``argv``; a ``--recipe`` becomes the defaults of a second parse (flags win)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    recipe = getattr(args, "recipe", None)
    if recipe:
        parser.subcommands[args.command].set_defaults(**choices.RECIPES[recipe])
        args = parser.parse_args(argv)
    return args


def _missing_extra(err):
    """A `UsageError` for an optional package that is not installed, or None."""
    top = (getattr(err, "name", None) or "").split(".")[0]
    if top not in choices.EXTRAS:
        return None
    return UsageError(
        f"this command needs the `{top}` package: pip install 'keras-se[{choices.EXTRAS[top]}]'"
    )


def main(argv=None):
    """Entry point of the ``keras-se`` console script; returns the exit code."""
    try:
        args = parse_args(argv)
        try:
            from keras_se import cli as commands  # Keras (and often TensorFlow) from here on

            return getattr(commands, "cmd_" + args.command)(args)
        except ModuleNotFoundError as err:
            usage = _missing_extra(err)
            if usage is None:
                raise
            raise usage from err
    except UsageError as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
