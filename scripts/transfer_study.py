#!/usr/bin/env python3
"""Add SE to an existing network, then fine-tune (issue 27): a few-shot transfer study, offline.

From scikit-learn's bundled digits it writes two image folders: ``pre`` (digits 0–4,
an 80/20 stratified split) and, per seed, ``few`` (digits 5–9 with ``--k`` training
images per class drawn with the seed; every other 5–9 image is validation). It pretrains
the plain CIFAR ResNet (``--model``, default ``resnet20_cifar``) on ``pre``, then for each
seed trains three arms on ``few`` with the same optimizer steps, batch, learning rate
and schedule:

* ``scratch``: the plain network from random weights;
* ``finetune``: the pretrained plain network (``--weights pre/model.keras``);
* ``retrofit``: the pretrained plain network with SE blocks inserted before every residual
  addition, gates initialised to identity (``--weights pre/model.keras --retrofit``;
  Hu et al., 2018, Sec. 3: SE blocks drop into existing architectures).

Both tasks have 5 classes, so the pretrained classifier is loaded too (an arbitrary map
of digits 0–4 onto 5–9): the transfer is in the backbone. Every run is a normal
resumable ``keras-se train`` run directory under ``--out``; the table (final validation
accuracy per arm, mean ± sd over seeds, and per seed) is printed and written to
``OUT/transfer.md`` and ``OUT/transfer.json``.

    python scripts/transfer_study.py --out runs/transfer
    python scripts/transfer_study.py --out runs/transfer --table-only
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

#: The arms, in table order: name → (loads the pretrained weights, retrofits SE).
ARMS = {"scratch": (False, False), "finetune": (True, False), "retrofit": (True, True)}
PRE_CLASSES = (0, 1, 2, 3, 4)
FEW_CLASSES = (5, 6, 7, 8, 9)
#: The fixed split of the pretraining task (digits 0–4).
PRE_VAL_FRACTION, PRE_SPLIT_SEED = 0.2, 0


def _numbers(text):
    return [int(x) for x in text.split(",") if x.strip()]


# --------------------------------------------------------------------------- data
def digit_images(image_size):
    """scikit-learn's digits as uint8 RGB arrays ``(N, S, S, 3)`` and labels ``(N,)``.

    The 8x8 images (values 0..16) are scaled to 0..255 and upscaled bilinearly (PIL) to
    ``image_size``.
    """
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype("uint8")
    images = np.stack(
        [
            np.asarray(
                Image.fromarray(p).resize((image_size, image_size), Image.BILINEAR).convert("RGB")
            )
            for p in pixels
        ]
    )
    return images, digits.target.astype("int64")


def _write_folder(root, splits):
    """Writes ``root/<split>/<class>/<index>.png`` for ``splits = {split: (images, labels, ids)}``."""
    from PIL import Image

    for split, (images, labels, ids) in splits.items():
        for image, label, index in zip(images, labels, ids):
            folder = os.path.join(root, split, str(int(label)))
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(image).save(os.path.join(folder, f"{int(index):04d}.png"))


def write_pretraining_folder(root, images, labels):
    """The ``pre`` task: digits 0–4, 80/20 stratified split (fixed). Returns the sizes."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    ids = np.flatnonzero(np.isin(labels, PRE_CLASSES))
    train_ids, val_ids = train_test_split(
        ids, test_size=PRE_VAL_FRACTION, stratify=labels[ids], random_state=PRE_SPLIT_SEED
    )
    if not os.path.isdir(root):
        _write_folder(
            root,
            {s: (images[i], labels[i], i) for s, i in (("train", train_ids), ("val", val_ids))},
        )
    return {"train": len(train_ids), "val": len(val_ids)}


def write_few_shot_folder(root, images, labels, *, k, seed):
    """The ``few`` task: digits 5–9, ``k`` training images per class drawn with ``seed``.

    Every other image of 5–9 is validation. Returns the sizes and the training indices.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    train_ids = []
    for digit in FEW_CLASSES:
        candidates = np.flatnonzero(labels == digit)
        if k >= len(candidates):
            raise ValueError(
                f"`k` must leave validation images of digit {digit} ({len(candidates)} in all). "
                f"Received: k={k}"
            )
        train_ids.extend(rng.choice(candidates, size=k, replace=False).tolist())
    train_ids = np.sort(np.array(train_ids))
    val_ids = np.setdiff1d(np.flatnonzero(np.isin(labels, FEW_CLASSES)), train_ids)
    if not os.path.isdir(root):
        _write_folder(
            root,
            {s: (images[i], labels[i], i) for s, i in (("train", train_ids), ("val", val_ids))},
        )
    return {"train": len(train_ids), "val": len(val_ids), "train_ids": train_ids.tolist()}


# --------------------------------------------------------------------------- runs
def _train(config):
    """One library run (resumes/finishes a run directory of the same settings); its summary."""
    import keras

    from keras_se.training import train

    started = time.perf_counter()
    summary = train(config, verbose=0)
    summary["wall_s"] = time.perf_counter() - started
    keras.utils.clear_session()  # one process trains many models
    return summary


def _se_layer_count(model_path):
    import keras

    from keras_se import finetune

    model = keras.models.load_model(model_path, safe_mode=True)
    count = len(finetune.se_layers_of(model))
    keras.utils.clear_session()
    return count


def run_study(args):
    """Writes the folders, pretrains, trains every arm for every seed; returns the results dict."""
    from keras_se.training import TrainConfig

    os.makedirs(args.out, exist_ok=True)
    images, labels = digit_images(args.image_size)
    data_dir = os.path.join(args.out, "data")
    pre_dir = os.path.join(data_dir, f"pre_{args.image_size}px")
    pre_sizes = write_pretraining_folder(pre_dir, images, labels)
    recipe = dict(
        image_size=args.image_size, schedule=args.schedule, weight_decay=args.weight_decay
    )
    if args.validation_steps:  # a smoke run's knob: not in the recipe of a real study
        recipe["validation_steps"] = args.validation_steps
    pre = _train(
        TrainConfig(
            model=args.model,
            dataset=pre_dir,
            out=os.path.join(args.out, "pre"),
            epochs=args.pre_epochs,
            batch_size=args.pre_batch_size,
            learning_rate=args.pre_lr,
            seed=0,
            **recipe,
        )
    )
    print(
        f"pretrained {args.model} on digits 0-4 ({pre_sizes['train']} train / {pre_sizes['val']} val, "
        f"{args.image_size}x{args.image_size}): val_accuracy {pre['final_val_accuracy']:.4f} "
        f"after {pre['epochs']} epochs ({pre['wall_s']:.0f} s)"
    )
    weights = pre["model_path"]
    runs = []
    for seed in args.seeds:
        few_dir = os.path.join(data_dir, f"few_k{args.k}_seed{seed}_{args.image_size}px")
        few_sizes = write_few_shot_folder(few_dir, images, labels, k=args.k, seed=seed)
        for arm, (pretrained, retrofit) in ARMS.items():
            summary = _train(
                TrainConfig(
                    model=args.model,
                    dataset=few_dir,
                    out=os.path.join(args.out, "runs", f"seed{seed}", arm),
                    weights=weights if pretrained else None,
                    retrofit=retrofit,
                    epochs=args.epochs,
                    batch_size=args.batch_size,
                    learning_rate=args.lr,  # explicit: the same for every arm (no fine-tuning tenth)
                    seed=seed,
                    **recipe,
                )
            )
            run = {
                "arm": arm,
                "seed": seed,
                "final_val_accuracy": summary["final_val_accuracy"],
                "best_val_accuracy": summary["best_val_accuracy"],
                "optimizer_steps": summary["epochs"] * summary["steps_per_epoch"],
                "params": summary["params"],
                "se_layers": _se_layer_count(summary["model_path"]),
                "train_size": few_sizes["train"],
                "val_size": few_sizes["val"],
                "wall_s": summary["wall_s"],
                "run_dir": summary["run_dir"],
                "model_path": summary["model_path"],
            }
            runs.append(run)
            print(
                f"seed {seed} {arm:>8}: val_accuracy {run['final_val_accuracy']:.4f} "
                f"({run['optimizer_steps']} steps, {run['params']:,} params, "
                f"{run['se_layers']} SE layers, {run['wall_s']:.0f} s)"
            )
    return {
        "model": args.model,
        "image_size": args.image_size,
        "k": args.k,
        "seeds": args.seeds,
        "pretraining": {
            "classes": list(PRE_CLASSES),
            **pre_sizes,
            "epochs": pre["epochs"],
            "final_val_accuracy": pre["final_val_accuracy"],
            "model_path": weights,
            "wall_s": pre["wall_s"],
        },
        "few_shot_classes": list(FEW_CLASSES),
        "recipe": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            **recipe,
        },
        "runs": runs,
        "note": (
            "both tasks have 5 classes, so the pretrained classifier is loaded too (an arbitrary "
            "map of digits 0-4 onto 5-9); the transfer is in the backbone"
        ),
    }


# --------------------------------------------------------------------------- table
def summarize(results):
    """``{arm: {"mean", "sd", "per_seed"}}`` of the final validation accuracy (sd: n-1)."""
    import numpy as np

    table = {}
    for arm in ARMS:
        rows = sorted((r for r in results["runs"] if r["arm"] == arm), key=lambda r: r["seed"])
        values = np.array([r["final_val_accuracy"] for r in rows], "float64")
        table[arm] = {
            "mean": float(values.mean()),
            "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "per_seed": {str(r["seed"]): r["final_val_accuracy"] for r in rows},
            "optimizer_steps": sorted({r["optimizer_steps"] for r in rows}),
            "se_layers": sorted({r["se_layers"] for r in rows}),
        }
    return table


def format_markdown(results, table, command):
    """The study's markdown: the table, the setting, the note, the command."""
    seeds = results["seeds"]
    pre, recipe = results["pretraining"], results["recipe"]
    lines = [
        f"# Few-shot transfer: {results['model']}, digits 0-4 -> 5-9 (K={results['k']} per class)",
        "",
        f"| arm | val accuracy (mean ± sd, {len(seeds)} seeds) | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " | optimizer steps | SE layers |",
        "|---" * (len(seeds) + 4) + "|",
    ]
    for arm, row in table.items():
        lines.append(
            f"| {arm} | {row['mean']:.4f} ± {row['sd']:.4f} | "
            + " | ".join(f"{row['per_seed'][str(s)]:.4f}" for s in seeds)
            + f" | {', '.join(map(str, row['optimizer_steps']))}"
            + f" | {', '.join(map(str, row['se_layers']))} |"
        )
    run = results["runs"][0]
    lines += [
        "",
        f"- Pretraining: {results['model']} on digits 0-4 ({pre['train']} train / {pre['val']} val "
        f"images), {pre['epochs']} epochs: val accuracy {pre['final_val_accuracy']:.4f}.",
        f"- Few-shot task: digits 5-9, {run['train_size']} training images ({results['k']} per class, "
        f"drawn with the seed), {run['val_size']} validation images; {recipe['image_size']}x"
        f"{recipe['image_size']} inputs.",
        f"- Every arm: {recipe['epochs']} epochs, batch {recipe['batch_size']}, lr "
        f"{recipe['learning_rate']} ({recipe['schedule']}), weight decay {recipe['weight_decay']}, "
        "SGD momentum 0.9; sd over seeds with n-1.",
        *(
            [f"- Validation: the first {recipe['validation_steps']} batches only (a smoke run)."]
            if recipe.get("validation_steps")
            else []
        ),
        f"- Note: {results['note']}.",
        "",
        "Reproduce:",
        "",
        "```",
        command,
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="resnet20_cifar", help="plain registry model; default %(default)s"
    )
    parser.add_argument("--seeds", type=_numbers, default=[0, 1, 2], help="default 0,1,2")
    parser.add_argument(
        "--k", type=int, default=10, help="training images per class of 5-9; default %(default)s"
    )
    parser.add_argument("--image-size", type=int, default=16, help="default %(default)s")
    parser.add_argument(
        "--pre-epochs", type=int, default=15, help="pretraining epochs; default %(default)s"
    )
    parser.add_argument("--pre-batch-size", type=int, default=32, help="default %(default)s")
    parser.add_argument(
        "--pre-lr", type=float, default=0.05, help="pretraining peak lr; default %(default)s"
    )
    parser.add_argument(
        "--epochs", type=int, default=30, help="few-shot epochs, every arm; default %(default)s"
    )
    parser.add_argument(
        "--batch-size", type=int, default=10, help="few-shot batch, every arm; default %(default)s"
    )
    parser.add_argument(
        "--lr", type=float, default=0.02, help="few-shot peak lr, every arm; default %(default)s"
    )
    parser.add_argument(
        "--schedule", default="cosine", help="lr schedule (keras-se train's); default %(default)s"
    )
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="default %(default)s")
    parser.add_argument(
        "--validation-steps",
        type=int,
        default=None,
        help="evaluate every run on the first N validation batches only (smoke tests); "
        "default: the whole split",
    )
    parser.add_argument(
        "--out", default="runs/transfer", help="data, run directories and the table go here"
    )
    parser.add_argument(
        "--table-only", action="store_true", help="print the table of a finished study"
    )
    args = parser.parse_args(argv)
    for name in ("k", "image_size", "pre_epochs", "pre_batch_size", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if args.validation_steps is not None and args.validation_steps < 1:
        parser.error("--validation-steps must be a positive integer")
    if not args.seeds:
        parser.error("--seeds must name at least one seed")
    json_path = os.path.join(args.out, "transfer.json")
    if args.table_only:
        with open(json_path) as f:
            results = json.load(f)
    else:
        started = time.perf_counter()
        results = run_study(args)
        results["wall_s"] = time.perf_counter() - started
    command = results.get("command") or shlex.join(
        [
            "python",
            "scripts/transfer_study.py",
            *("--model", args.model, "--seeds", ",".join(map(str, args.seeds))),
            *("--k", str(args.k), "--image-size", str(args.image_size)),
            *("--pre-epochs", str(args.pre_epochs), "--pre-batch-size", str(args.pre_batch_size)),
            *("--pre-lr", str(args.pre_lr), "--epochs", str(args.epochs)),
            *("--batch-size", str(args.batch_size), "--lr", str(args.lr)),
            *("--schedule", args.schedule, "--weight-decay", str(args.weight_decay)),
            *(("--validation-steps", str(args.validation_steps)) if args.validation_steps else ()),
            *("--out", args.out),
        ]
    )
    results["command"] = command
    results["table"] = summarize(results)
    text = format_markdown(results, results["table"], command)
    if "wall_s" in results:
        text += f"\nTotal wall time: {results['wall_s']:.0f} s.\n"
    with open(json_path, "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(args.out, "transfer.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
