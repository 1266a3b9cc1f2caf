"""The ``keras-se`` command line: argument parsing and one library call per subcommand.

User mistakes (bad flags, unknown names, unusable paths) print one line on stderr
and exit with code 2; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import os
import sys


class UsageError(Exception):
    """A user mistake the CLI reports in one line (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def _cmd_info(args):
    from keras_se import info

    print(info.format_info(info.collect_info(devices=not args.no_devices)))
    return 0


def _cmd_export(args):
    from keras_se import export

    result = export.export_model(
        args.source,
        args.base,
        name=args.name,
        version=args.version,
        with_excitations=args.with_excitations,
        top_k=args.top_k,
        dynamic_size=args.dynamic_size,
    )
    print(export.format_result(result))
    return 0


def _number(kind, *, minimum, inclusive, what):
    """An argparse type: a number of ``kind`` above (or at) ``minimum``."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, minimum=1, inclusive=True, what="a positive integer")
_positive_float = _number(float, minimum=0.0, inclusive=False, what="a positive number")
_non_negative_float = _number(float, minimum=0.0, inclusive=True, what="a number >= 0")


def add_training_arguments(p, *, model_default="se_resnet18", out_default="runs/train"):
    """The training flags shared by ``train`` and ``tune`` (one recipe, one code path)."""
    g = p.add_argument_group("model and data")
    g.add_argument(
        "--model",
        default=model_default,
        help="registry name (see `keras-se info`); default %(default)s",
    )
    g.add_argument(
        "--dataset",
        default="digits",
        help="'digits' (embedded, offline), a TFDS name (cifar10, imagenette/320px, tf_flowers, imagenet2012, ...) "
        "or an image folder root/<train|val>/<class>/*.png; default %(default)s",
    )
    g.add_argument("--data-dir", help="TFDS data directory")
    g.add_argument("--manual-dir", help="TFDS manual download directory (imagenet2012)")
    g.add_argument(
        "--image-size",
        type=_positive_int,
        help="model input size (default: the dataset's; digits 32)",
    )
    g.add_argument("--se-ratio", type=_positive_float, help="override the SE reduction ratio r")
    g = p.add_argument_group("recipe (defaults follow the paper)")
    g.add_argument("--epochs", type=_positive_int, default=10, help="default %(default)s")
    g.add_argument(
        "--batch-size",
        type=_positive_int,
        default=64,
        help="GLOBAL batch size; default %(default)s",
    )
    g.add_argument(
        "--lr",
        type=_positive_float,
        help="peak learning rate; default 0.6 * batch_size / 1024 (the paper's scaling)",
    )
    g.add_argument(
        "--momentum",
        type=_non_negative_float,
        default=0.9,
        help="SGD momentum; default %(default)s",
    )
    g.add_argument(
        "--weight-decay", type=_non_negative_float, default=1e-4, help="default %(default)s"
    )
    g.add_argument(
        "--schedule",
        choices=["step", "cosine"],
        default="step",
        help="step: x0.1 every --step-epochs; cosine: with --warmup-epochs",
    )
    g.add_argument("--step-epochs", type=_positive_int, default=30, help="default %(default)s")
    g.add_argument(
        "--warmup-epochs",
        type=int,
        default=0,
        help="linear warmup epochs (cosine); default %(default)s",
    )
    g.add_argument(
        "--label-smoothing", type=_non_negative_float, default=0.0, help="default %(default)s"
    )
    g.add_argument("--steps-per-epoch", type=_positive_int, help="cap on training steps per epoch")
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds weights, data order and augmentation; default %(default)s",
    )
    g = p.add_argument_group("hardware")
    g.add_argument(
        "--strategy",
        choices=["auto", "one-device", "mirrored", "multi-worker", "tpu"],
        default="auto",
        help="auto: multi-worker when TF_CONFIG names >1 worker, mirrored with >1 GPU, else one device",
    )
    g.add_argument("--tpu", help="TPU address for --strategy tpu")
    g.add_argument(
        "--cpu-devices",
        type=_positive_int,
        help="split the CPU into N logical devices (try --strategy mirrored without GPUs)",
    )
    g.add_argument(
        "--sync-bn", action="store_true", help="synchronise BatchNorm statistics across replicas"
    )
    g.add_argument(
        "--mixed-precision", choices=["float16", "bfloat16"], help="mixed precision (float32 head)"
    )
    g.add_argument("--jit-compile", action="store_true", help="compile the training step with XLA")
    p.add_argument(
        "--out",
        default=out_default,
        help="run directory (rerun the same command to resume); default %(default)s",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def training_config(args):
    """A `TrainConfig` from parsed training flags."""
    from keras_se.training import TrainConfig

    return TrainConfig(
        model=args.model,
        dataset=args.dataset,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        step_epochs=args.step_epochs,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        mixed_precision=args.mixed_precision,
        jit_compile=args.jit_compile,
        strategy=args.strategy,
        sync_bn=args.sync_bn,
        seed=args.seed,
        image_size=args.image_size,
        se_ratio=args.se_ratio,
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
        steps_per_epoch=args.steps_per_epoch,
        tpu=args.tpu,
        cpu_devices=args.cpu_devices,
    )


def _cmd_train(args):
    from keras_se.training import format_summary, train

    config = training_config(args)
    config.validate()
    summary = train(config, verbose=0 if args.quiet else 1)
    print(format_summary(summary))
    return 0


def _ratios(text):
    try:
        values = tuple(float(v) if "." in v else int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive numbers, got {text!r}"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive numbers, got {text!r}")
    return values


def _choices(allowed):
    def parse(text):
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in values if v not in allowed]
        if not values or bad:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated subset of {','.join(allowed)}, got {text!r}"
            )
        return values

    return parse


def _cmd_tune(args):
    import os

    from keras_se import tuning

    if args.distributed:
        if args.distributed == "worker" and args.oracle_port is None:
            raise UsageError(
                "keras-se tune: --distributed worker needs --oracle-port (the chief's port)"
            )
        env = tuning.distributed_env(
            args.distributed,
            port=args.oracle_port or 8000,
            address=args.oracle_address,
            worker_index=args.worker_index,
        )
        os.environ.update(env)
    if args.space:
        space = tuning.SearchSpace.from_file(args.space)
    else:
        space = tuning.SearchSpace(
            ratios=args.ratios,
            squeeze=args.squeeze,
            gate=args.gate,
            se_mode=args.se_mode,
            learning_rate=args.lrs,
        )
    config = training_config(args)
    tuning.search(
        config,
        space,
        out=args.out,
        oracle=args.oracle,
        max_trials=args.max_trials,
        verbose=0 if args.quiet else 1,
        export=not args.no_export,
    )
    return 0


def _cmd_bench(args):
    from keras_se import bench

    report = bench.run_benchmarks(
        quick=args.quick, jax=not args.no_jax, verbose=0 if args.quiet else 1, device=args.device
    )
    command = (
        "keras-se bench" + (" --quick" if args.quick else "") + (" --no-jax" if args.no_jax else "")
    )
    command += " --device gpu" if args.device == "gpu" else ""
    bench.write_report(report, out=args.out, markdown=args.markdown, command=command)
    print(bench.format_markdown(report, command=command))
    return 0


def _cmd_quickstart(args):
    from keras_se.quickstart import quickstart

    quickstart(out=args.out, epochs=args.epochs, verbose=0 if args.quiet else 1)
    return 0


def _cmd_convert(args):
    from keras_se import data, weights

    if not args.out.endswith(".keras"):
        raise UsageError(f"--out must be a .keras file. Received: --out {args.out!r}")
    if args.model is None and not weights.is_named_source(args.source):
        raise UsageError(f"a weights file needs --model (e.g. --model se_resnet50): {args.source}")
    try:
        model = weights.load_reference_model(
            args.source, model=args.model, include_top=not args.no_top
        )
    except (ImportError, ConnectionError) as err:  # optional extra missing, or no network
        raise UsageError(" ".join(str(err).split())) from err
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    model.save(args.out)
    sidecar = data.save_preprocessing(args.out, model.preprocessing)
    print(f"{args.out}: {model.name} with the weights of {args.source}; preprocessing: {sidecar}")
    return 0


def _comma_list(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def _cmd_visualize(args):
    from keras_se import visualize

    result = visualize.visualize_model(
        args.source,
        dataset=args.dataset,
        out=args.out,
        split=args.split,
        blocks=args.blocks,
        classes=args.classes,
        image_index=args.image_index,
        walkthrough_block=args.walkthrough_block,
        batch_size=args.batch_size,
        max_images=args.max_images,
        verbose=0 if args.quiet else 1,
    )
    print(visualize.format_result(result))
    return 0


def build_parser():
    parser = _Parser(
        prog="keras-se",
        description="Squeeze-and-Excitation networks for Keras 3: build, train, tune, export, analyse.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "info", help="versions, Keras backend, devices, registered models and layers"
    )
    p.add_argument("--no-devices", action="store_true", help="skip listing devices (faster)")
    p.set_defaults(func=_cmd_info)

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
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "train",
        help="train a registry model (tf.distribute: one device, mirrored, multi-worker, TPU)",
        description="Train a keras_se model. Rerunning the same command with the same --out resumes "
        "from the last completed epoch.",
    )
    add_training_arguments(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "tune",
        help="keras-tuner search of the SE reduction ratio (and squeeze, gate, SE mode, lr)",
        description="Search the SE reduction ratio as in the paper's ablation. Rerunning the same command with "
        "the same --out resumes: completed trials are kept and only the rest run. Writes results.json, "
        "results.csv, ratio_tradeoff.png/.svg, best_model.keras and a SavedModel of the best model.",
    )
    add_training_arguments(p, out_default="runs/tune")
    g = p.add_argument_group("search")
    g.add_argument(
        "--ratios",
        type=_ratios,
        default=(2, 4, 8, 16, 32),
        help="reduction ratios; default 2,4,8,16,32",
    )
    g.add_argument(
        "--squeeze", type=_choices(("avg", "max")), help="also search the squeeze, e.g. avg,max"
    )
    g.add_argument(
        "--gate", type=_choices(("sigmoid", "hard_sigmoid")), help="also search the gate"
    )
    g.add_argument(
        "--se-mode",
        type=_choices(("standard", "pre", "post", "identity")),
        help="also search the SE integration",
    )
    g.add_argument("--lrs", type=_ratios, help="also search learning rates, e.g. 0.01,0.05")
    g.add_argument("--space", help="a JSON/YAML search-space file (overrides the flags above)")
    g.add_argument(
        "--oracle",
        choices=["grid", "random", "bayesian", "hyperband"],
        default="grid",
        help="default grid",
    )
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
    p.set_defaults(func=_cmd_tune)

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
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "quickstart",
        help="train a small SE-ResNet on the embedded digits, then export and visualise it",
    )
    p.add_argument("--out", default="runs/quickstart", help="output directory; default %(default)s")
    p.add_argument(
        "--epochs", type=_positive_int, default=None, help="override the quickstart's epochs"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_quickstart)

    p = sub.add_parser(
        "export", help="SavedModel for TF Serving: BASE/NAME/VERSION/, written atomically"
    )
    p.add_argument(
        "source", metavar="RUN_DIR_OR_MODEL", help="training run directory or .keras file"
    )
    p.add_argument("--base", default="models", help="TF Serving base directory (default: models)")
    p.add_argument("--name", help="model name (default: the run's model name or the file's stem)")
    p.add_argument("--version", type=int, help="version number (default: the next one)")
    p.add_argument(
        "--with-excitations", action="store_true", help="add the `excitations` signature"
    )
    p.add_argument("--top-k", type=int, metavar="K", help="add top_k_* outputs with K classes")
    p.add_argument(
        "--dynamic-size", action="store_true", help="accept any H/W; resize inside the graph"
    )
    p.set_defaults(func=_cmd_export)

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
    p.add_argument("--split", choices=["validation", "train"], default="validation")
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
    p.set_defaults(func=_cmd_visualize)
    return parser


def main(argv=None):
    """Entry point of the ``keras-se`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, PermissionError) as err:
        # Library argument errors name the argument and the value: print them as one line.
        message = " ".join(str(err).split())
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
