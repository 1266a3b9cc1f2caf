#!/usr/bin/env python3
"""How the excitations learn: the quickstart network trained longer, several seeds, logged every epoch.

Trains the `keras-se quickstart` recipe (its model, data and optimizer) for ``--epochs``
with ``--log-excitations 1`` once per seed, then prints, per SE block, the
class-specificity η² (mean ± sd over seeds) and the mean gate at the chosen epochs — the
table in docs/understanding.md, "Excitations during training". Each run is a normal
resumable run directory (``OUT/seed_S``) with TensorBoard logs.

    python scripts/excitation_study.py --seeds 0,1,2 --epochs 30 --out runs/study
    tensorboard --logdir runs/study
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _numbers(text):
    return [int(x) for x in text.split(",") if x.strip()]


def run(out, seeds, epochs):
    from keras_se.quickstart import QUICKSTART
    from keras_se.training import TrainConfig, train

    for seed in seeds:
        settings = dict(QUICKSTART, seed=seed, epochs=epochs)
        train(
            TrainConfig(out=os.path.join(out, f"seed_{seed}"), log_excitations=1, **settings),
            verbose=0,
        )


def table(out, seeds, at):
    """Markdown tables of specificity and mean gate per block (mean ± sd over seeds) at epochs ``at``."""
    import numpy as np

    from keras_se.rundir import RunDir

    def load(seed, epoch):
        with open(RunDir(os.path.join(out, f"seed_{seed}")).excitations_path(epoch)) as f:
            return json.load(f)

    first = load(seeds[0], at[0])
    labels = [f"SE_{b['stage']}_{b['index']}" for b in first["blocks"]]
    lines = []
    for title, key in (("class-specificity η²", "specificity"), ("mean gate", "mean")):
        lines += [
            f"**{title}** (mean ± sd over seeds {','.join(map(str, seeds))})",
            "",
            "| epoch | " + " | ".join(labels) + " |",
            "|---" * (len(labels) + 1) + "|",
        ]
        for epoch in at:
            cells = []
            for i in range(len(labels)):
                values = []
                for seed in seeds:
                    block = load(seed, epoch)["blocks"][i]
                    value = block[key] if key == "specificity" else float(np.mean(block["mean"]))
                    values.append(np.nan if value is None else value)
                values = np.array(values, "float64")
                cells.append(f"{np.nanmean(values):.2f} ± {np.nanstd(values):.2f}")
            lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds", type=_numbers, default=[0, 1, 2], help="comma-separated seeds; default 0,1,2"
    )
    parser.add_argument(
        "--epochs", type=int, default=30, help="epochs per seed; default %(default)s"
    )
    parser.add_argument(
        "--at", type=_numbers, help="epochs in the table (default: 1, 3, 10 and the last)"
    )
    parser.add_argument("--out", default="runs/study", help="one run directory per seed under it")
    parser.add_argument(
        "--table-only", action="store_true", help="print the table of finished runs"
    )
    args = parser.parse_args(argv)
    at = args.at or sorted({e for e in (1, 3, 10, args.epochs) if e <= args.epochs})
    if not args.table_only:
        run(args.out, args.seeds, args.epochs)
    print(table(args.out, args.seeds, at))
    return 0


if __name__ == "__main__":
    sys.exit(main())
