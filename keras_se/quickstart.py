"""``keras-se quickstart``: the whole product on the embedded digits in a few minutes.

Trains a CIFAR-style SE-ResNet-20 (keras_se/models/cifar.py) on scikit-learn's bundled
handwritten digits (no network), then exports it for TF Serving and draws the excitation
figures, printing where everything was written.
"""

from __future__ import annotations

import os
import time

from keras_se.training import TrainConfig, format_summary, train

#: The quickstart recipe: He et al.'s CIFAR SE-ResNet-20 (0.28M parameters, 40x fewer
#: than the SE-ResNet-18 used before, 14x fewer MACs per image) on 16x16 digits (the
#: digits are 8x8: 16x16 loses nothing, and is 4x cheaper than 32x32), with the paper's SGD
#: (momentum 0.9, weight decay 1e-4) and a 6-epoch cosine schedule. se_ratio 4, not the
#: paper's 16: the first stage has 16 channels, and 16 / 16 = one hidden unit, whose ReLU
#: died in our run (a constant gate, no class-specificity to measure); the paper's ratio
#: ablation finds little accuracy difference between r = 4 and 16. Measured (docs/understanding.md,
#: "Measured: the digits quickstart model"): 99.2 % validation accuracy.
QUICKSTART = dict(
    model="se_resnet20_cifar",
    se_ratio=4,
    dataset="digits",
    image_size=16,
    epochs=6,
    batch_size=32,
    learning_rate=0.1,
    schedule="cosine",
    seed=0,
)


def quickstart(out="runs/quickstart", *, epochs=None, verbose=1):
    """Runs the quickstart into ``out``; returns a dict of what was written.

    Example:
        >>> written = quickstart("runs/quickstart")   # doctest: +SKIP
    """
    start = time.perf_counter()
    settings = dict(QUICKSTART)
    if epochs is not None:
        settings["epochs"] = epochs
    run_dir = os.path.join(out, "run")
    config = TrainConfig(out=run_dir, **settings)
    summary = train(config, verbose=verbose)
    written = {"run_dir": summary["run_dir"], "model": summary["model_path"]}
    print(format_summary(summary))
    # A TF Serving SavedModel (a rerun keeps the version already exported).
    from keras_se import export

    model_dir = os.path.join(out, "models", config.model)
    versions = export.existing_versions(model_dir) if os.path.isdir(model_dir) else []
    if versions:
        written["savedmodel"] = os.path.join(model_dir, str(max(versions)))
    else:
        result = export.export_model(summary["run_dir"], os.path.join(out, "models"), name=config.model)
        written["savedmodel"] = result.path
    # Figures 1-3 of `keras_se.visualize` (excitation analysis on the validation digits).
    from keras_se.visualize import visualize_model

    figures = visualize_model(summary["run_dir"], out=os.path.join(out, "figures"), verbose=verbose)
    print(figures.analysis.format_table())
    written["excitations"] = figures.files["analysis"]
    for key in ("excitation_by_depth", "specificity_by_depth", "walkthrough"):
        written[key] = figures.files[key][0]  # the PNG; the SVG is beside it
    written["seconds"] = time.perf_counter() - start
    print(f"Quickstart finished in {written['seconds']:.0f} s. Written:")
    for key, value in written.items():
        if key != "seconds":
            print(f"  {key:>20}: {value}")
    return written
