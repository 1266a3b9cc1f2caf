"""The ``keras-se`` commands: one library call per subcommand, ``cmd_<name>(args)``.

Parsing lives in `keras_se_core.cli` (standard library only, so ``--help`` is instant),
which imports this module only to run a command (``python -m keras_se_core.cli`` is the
same as ``keras-se``). User mistakes raise `keras_se_core.errors.UsageError` (one
``error:`` line, exit 2); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys

from keras_se_core.configs import TrainConfig
from keras_se_core.errors import EXIT_PREEMPTED, UsageError


def _verbose(args):
    return 0 if getattr(args, "quiet", False) else 1


def cmd_info(args):
    from keras_se import info

    print(info.format_info(info.collect_info(devices=not args.no_devices)))
    return 0


def cmd_export(args):
    from keras_se import export

    result = export.export_model(
        args.source,
        args.base,
        name=args.name,
        version=args.version,
        with_excitations=args.with_excitations,
        top_k=args.top_k,
        dynamic_size=args.dynamic_size,
        precision=args.precision,
    )
    print(export.format_result(result))
    return 0


def cmd_train(args):
    from keras_se import training

    try:
        summary = training.train(TrainConfig.from_args(args), verbose=_verbose(args))
    except training.Preempted as stop:
        print(f"keras-se train: {stop}", file=sys.stderr)
        return EXIT_PREEMPTED
    print(training.format_summary(summary))
    return 0


def cmd_tune(args):
    from keras_se import tuning

    if args.distributed:
        if args.distributed == "worker" and args.oracle_port is None:
            raise UsageError(
                "keras-se tune: --distributed worker needs --oracle-port (the chief's port)"
            )
        os.environ.update(
            tuning.distributed_env(
                args.distributed,
                port=args.oracle_port or 8000,
                address=args.oracle_address,
                worker_index=args.worker_index,
            )
        )
    space = tuning.SearchSpace.from_flags(
        args.space,
        ratios=args.ratios,
        squeeze=args.squeeze,
        gate=args.gate,
        se_mode=args.se_mode,
        learning_rate=args.lrs,
    )
    tuning.search(
        TrainConfig.from_args(args),
        space,
        out=args.out,
        oracle=args.oracle,
        max_trials=args.max_trials,
        verbose=_verbose(args),
        export=not args.no_export,
    )
    return 0


def cmd_bench(args):
    from keras_se import bench

    report = bench.run_benchmarks(
        quick=args.quick,
        jax=not args.no_jax,
        verbose=_verbose(args),
        device=args.device,
        only=args.only,
        peer=args.peer,
        peer_python=args.peer_python,
        threads=args.threads,
    )
    command = "keras-se bench" + (" --quick" if args.quick else "")
    command += (" --no-jax" if args.no_jax else "") + (
        " --device gpu" if args.device == "gpu" else ""
    )
    command += (f" --only {args.only}" if args.only else "") + (
        f" --peer {args.peer}" if args.peer else ""
    )
    bench.write_report(
        report,
        out=args.out,
        markdown=args.markdown,
        command=command,
        section=bench.report_section(report),
    )
    print(bench.format_markdown(report, command=command))
    return 0


def cmd_quickstart(args):
    from keras_se.quickstart import quickstart

    quickstart(out=args.out, epochs=args.epochs, verbose=_verbose(args))
    return 0


def cmd_convert(args):
    from keras_se import data
    from keras_se.models import preprocessing, pretrained

    if not args.out.endswith(".keras"):
        raise UsageError(f"--out must be a .keras file. Received: --out {args.out!r}")
    if args.model is None and not pretrained.is_named_source(args.source):
        raise UsageError(f"a weights file needs --model (e.g. --model se_resnet50): {args.source}")
    try:
        model = pretrained.load_reference_model(
            args.source, model=args.model, include_top=not args.no_top
        )
    except (ImportError, ConnectionError) as err:  # optional extra missing, or no network
        raise UsageError(" ".join(str(err).split())) from err
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    model.save(args.out)
    sidecar = data.save_preprocessing(args.out, preprocessing.of(model))
    print(f"{args.out}: {model.name} with the weights of {args.source}; preprocessing: {sidecar}")
    return 0


def cmd_visualize(args):
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
        verbose=_verbose(args),
    )
    print(visualize.format_result(result))
    return 0


def cmd_predict(args):
    from keras_se import predict

    result = predict.predict_images(args.images, model=args.model, top_k=args.top_k)
    for path, reason in result.skipped:
        print(f"keras-se predict: skipping {path}: {reason}", file=sys.stderr)
    print(predict.format_predictions(result, as_json=args.json))
    return 0


if __name__ == "__main__":  # ``python -m keras_se.cli``, as in keras_se 0.1: run the launcher
    import runpy

    runpy.run_module("keras_se_core.cli", run_name="__main__", alter_sys=True)
