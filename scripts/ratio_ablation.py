#!/usr/bin/env python3
"""Reproduce the paper's reduction-ratio ablation (Table 10) on any registry model and dataset.

Trains one model per ratio (a keras-tuner grid through `keras-se tune`: resumable, the
same training path as `keras-se train`) and prints the paper's table: ratio, parameters
(and the closed form's SE overhead), validation accuracy. The paper's SE-ResNet-50 on
ImageNet: r = 2, 4, 8, 16, 32 → 45.7M, 35.6M, 30.6M, 28.1M, 26.8M parameters, about the
same accuracy down to r = 16, worse at 32.

    python scripts/ratio_ablation.py --model se_resnet18 --dataset digits --epochs 3 --out runs/ablation
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="se_resnet18", help="registry name; default %(default)s")
    parser.add_argument(
        "--dataset", default="digits", help="digits, a TFDS name or a folder; default %(default)s"
    )
    parser.add_argument(
        "--ratios", default="2,4,8,16,32", help="comma-separated ratios; default %(default)s"
    )
    parser.add_argument(
        "--epochs", type=int, default=3, help="epochs per ratio; default %(default)s"
    )
    parser.add_argument("--out", default="runs/ablation", help="search directory (rerun to resume)")
    parser.add_argument(
        "--table-only", action="store_true", help="print the table of a finished search"
    )
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="-- then more keras-se tune flags")
    args = parser.parse_args(argv)
    if not args.table_only:
        from keras_se_core.cli import main as keras_se

        extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
        code = keras_se(
            [
                "tune",
                "--model",
                args.model,
                "--dataset",
                args.dataset,
                "--ratios",
                args.ratios,
                "--epochs",
                str(args.epochs),
                "--out",
                args.out,
                "--no-export",
                "--quiet",
                *extra,
            ]
        )
        if code:
            return code
    print(format_table(os.path.join(args.out, "results.json")))
    return 0


def format_table(results_path):
    """The ablation table (ratio, parameters, best validation accuracy) of a ``results.json``."""
    with open(results_path) as f:
        trials = json.load(f)
    lines = [f"{'r':>6} {'parameters':>14} {'val_accuracy':>13}"]
    for trial in sorted(trials, key=lambda t: t["hyperparameters"]["se_ratio"]):
        accuracy = trial.get("best_val_accuracy")
        lines.append(
            f"{trial['hyperparameters']['se_ratio']:>6} {trial.get('params') or 0:>14,} "
            f"{'n/a' if accuracy is None else f'{accuracy:.4f}':>13}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
