"""The search directory of ``keras-se tune``: its file names, the trials' run directories,
the recorded settings, and the summary (``results.json``/``.csv``, the table, the figures,
the best model).

The one owner of that layout (``OUT/search.json``, ``OUT/tuner/trial_<id>/run``,
``OUT/tuner/hparams``, ``OUT/results.*``, ``OUT/best_model.keras``, ``OUT/serving``):
`keras_se.tuning.tuner` and readers of a finished search go through it.

Example:
    >>> trial_run_dir(os.path.join("runs/tune", PROJECT_NAME), "03")
    'runs/tune/tuner/trial_03/run'
"""

from __future__ import annotations

import csv
import json
import os

from keras_se.extras import require
from keras_se_core import fileio
from keras_se_core.errors import UsageError

#: The objective of every search (a trial's best validation accuracy).
OBJECTIVE = "val_accuracy"
#: The search settings `keras_se.tuning.search` records in its directory, for `load_tuner`.
SEARCH_FILE = "search.json"
#: keras-tuner's project folder inside the search directory (``oracle.json``, trials).
PROJECT_NAME = "tuner"
#: The trial metrics recorded with the objective (`SEHyperModel.fit` reports them).
TRIAL_METRICS = ("final_val_accuracy", "params", "macs", "time_per_step_s")


# --------------------------------------------------------------------------- layout
def trial_run_dir(project_dir, trial_id):
    """The training run directory of one trial: ``<project>/trial_<id>/run``.

    Example:
        >>> trial_run_dir("runs/tune/tuner", "03")
        'runs/tune/tuner/trial_03/run'
    """
    return os.path.join(project_dir, f"trial_{trial_id}", "run")


def trial_model_path(project_dir, trial_id):
    """The trained model file of one trial: the run directory's own model file.

    The one place that knows where a trial's model lies (`SETuner.save_model`,
    `SETuner.load_model`, `search`'s best model).

    Example (an absolute path):
        >>> import os
        >>> os.path.relpath(trial_model_path("runs/tune/tuner", "03"))
        'runs/tune/tuner/trial_03/run/model.keras'
    """
    from keras_se.rundir import RunDir

    return RunDir(trial_run_dir(project_dir, trial_id)).model_path


def write_settings(out, settings):
    """Records a search's settings (``oracle``, ``max_trials``, ``space``, ``train``) in ``out``.

    Example:
        >>> import tempfile
        >>> out = tempfile.mkdtemp()
        >>> write_settings(out, {"oracle": "grid", "max_trials": None, "space": {}, "train": {}})
        >>> os.listdir(out)
        ['search.json']
    """
    fileio.write_json(os.path.join(out, SEARCH_FILE), settings)


def read_settings(out):
    """The settings `write_settings` recorded in the search directory ``out``.

    Returns:
        ``(settings, path)``: the mapping and the file it was read from (for messages).

    Raises:
        UsageError: ``out`` holds no search (no settings or no keras-tuner oracle).

    Example:
        >>> import tempfile
        >>> read_settings(tempfile.mkdtemp())
        Traceback (most recent call last):
        keras_se_core.errors.UsageError: `out` is not a search directory ...
    """
    out = os.fspath(out)
    settings_path = os.path.join(out, SEARCH_FILE)
    oracle_path = os.path.join(out, PROJECT_NAME, "oracle.json")
    if not (os.path.isfile(settings_path) and os.path.isfile(oracle_path)):
        raise UsageError(
            f"`out` is not a search directory of keras_se.tuning.search (no {SEARCH_FILE} "
            f"and {PROJECT_NAME}/oracle.json). Received: out={out!r}"
        )
    with open(settings_path) as f:
        return json.load(f), settings_path


def searched_values(trial):
    """``{hyperparameter: value}`` of a keras-tuner trial, without the tuner's own
    ``tuner/...`` entries (Hyperband's epochs and brackets).

    Example:
        >>> import keras_tuner
        >>> trial = keras_tuner.engine.trial.Trial(keras_tuner.HyperParameters())
        >>> trial.hyperparameters.values.update({"se_ratio": 8, "tuner/epochs": 3})
        >>> searched_values(trial)
        {'se_ratio': 8}
    """
    return {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}


def write_hparams(project_dir, trial, metrics):
    """The TensorBoard HParams record of one trial (``<project>/hparams/trial_<id>``).

    Args:
        project_dir: the keras-tuner project folder (``OUT/tuner``).
        trial: the keras-tuner ``Trial``.
        metrics: what `SEHyperModel.fit` returned for it.

    Example:
        >>> write_hparams(tuner.project_dir, trial, {"val_accuracy": 0.98})  # doctest: +SKIP
    """
    tf = require("tensorflow", feature="keras_se.tuning.search", extra="tune")
    hparams_api = require(
        "tensorboard.plugins.hparams.api", feature="keras_se.tuning.search", extra="tune"
    )

    values = searched_values(trial)
    with tf.summary.create_file_writer(
        os.path.join(project_dir, "hparams", f"trial_{trial.trial_id}")
    ).as_default():
        hparams_api.hparams(values, trial_id=trial.trial_id)
        for key in (OBJECTIVE, "params", "time_per_step_s"):
            if metrics.get(key) is not None:
                tf.summary.scalar(key, metrics[key], step=1)


def collect_results(oracle, out):
    """One dict per trial of the search in ``out``, best ``val_accuracy`` first.

    Example (an oracle before its first trial has none):
        >>> from keras_se.tuning import SearchSpace, make_oracle
        >>> collect_results(make_oracle("grid", SearchSpace(ratios=(8, 16))), "runs/tune")
        []
        >>> tuner = load_tuner("runs/tune")  # doctest: +SKIP
        >>> best = collect_results(tuner.oracle, "runs/tune")[0]  # doctest: +SKIP
        >>> best["hyperparameters"]  # doctest: +SKIP
        {'se_ratio': 16}
    """
    rows = []
    for trial in oracle.trials.values():
        metrics = {}
        for name in (OBJECTIVE, *TRIAL_METRICS):
            if trial.metrics.exists(name):
                metrics[name] = trial.metrics.get_best_value(name)
        run_dir = trial_run_dir(os.path.join(out, PROJECT_NAME), trial.trial_id)
        rows.append(
            {
                "trial_id": trial.trial_id,
                "hyperparameters": searched_values(trial),
                "best_val_accuracy": metrics.get(OBJECTIVE),
                "final_val_accuracy": metrics.get("final_val_accuracy"),
                "params": int(metrics["params"]) if "params" in metrics else None,
                "macs": int(metrics["macs"]) if "macs" in metrics else None,
                "time_per_step_s": metrics.get("time_per_step_s"),
                "status": str(trial.status),
                "run_dir": run_dir,
                **_learned(run_dir),
            }
        )
    rows.sort(
        key=lambda r: (
            r["best_val_accuracy"] is None,
            -(r["best_val_accuracy"] or 0),
            r["trial_id"],
        )
    )
    return rows


def _learned(run_dir):
    """Per SE block: labels, class-specificity and mean gate of the run's last excitation analysis."""
    from keras_se.rundir import RunDir

    run = RunDir(run_dir)
    epochs = run.excitation_epochs()
    if not epochs:
        return {}
    with open(run.excitations_path(epochs[-1])) as f:
        blocks = json.load(f)["blocks"]
    return {
        "blocks": [f"SE_{b['stage']}_{b['index']}" for b in blocks],
        "specificity": [b["specificity"] for b in blocks],
        "mean_gate": [round(sum(b["mean"]) / len(b["mean"]), 6) for b in blocks],
    }


def write_results(results, out):
    """``results.json``, ``results.csv`` and the trade-off figure (PNG + SVG) in ``out``.

    Example (a row as `collect_results` returns it, and a trial still running):
        >>> import os, tempfile
        >>> best = {"trial_id": "0", "hyperparameters": {"se_ratio": 16}, "best_val_accuracy": 0.98,
        ...         "final_val_accuracy": 0.97, "params": 11_260_354, "macs": 36_000_000,
        ...         "time_per_step_s": 0.112, "status": "COMPLETED"}
        >>> running = dict(best, trial_id="1", hyperparameters={"se_ratio": 4}, status="RUNNING")
        >>> out = tempfile.mkdtemp()
        >>> write_results([best, running], out)
        >>> sorted(os.listdir(out))
        ['ratio_tradeoff.png', 'ratio_tradeoff.svg', 'results.csv', 'results.json']
    """
    fileio.write_json(os.path.join(out, "results.json"), results)
    hp_names = sorted({k for r in results for k in r["hyperparameters"]})
    fields = [
        "trial_id",
        *hp_names,
        "best_val_accuracy",
        "final_val_accuracy",
        "params",
        "macs",
        "time_per_step_s",
        "status",
        "specificity",
        "mean_gate",
    ]
    with fileio.atomic_open(os.path.join(out, "results.csv"), newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in results:
            row = {k: r.get(k) for k in fields if k not in hp_names}
            row.update({k: r["hyperparameters"].get(k) for k in hp_names})
            for key in ("specificity", "mean_gate"):  # one value per SE block, in network order
                row[key] = " ".join("nan" if v is None else f"{v:.4f}" for v in r.get(key) or [])
            writer.writerow(row)
    if any(r["status"] == "COMPLETED" for r in results):
        from keras_se.ratio_figures import plot_ratio_tradeoff, plot_specificity_by_ratio

        plot_ratio_tradeoff(results, os.path.join(out, "ratio_tradeoff"))
        if any(r.get("specificity") for r in results):
            plot_specificity_by_ratio(results, os.path.join(out, "specificity_by_ratio"))


def format_table(results):
    """The paper's reduction-ratio table for the terminal.

    Example (rows as `collect_results` returns them):
        >>> results = [
        ...     {"trial_id": "0", "hyperparameters": {"se_ratio": 16}, "best_val_accuracy": 0.9861,
        ...      "final_val_accuracy": 0.9833, "params": 11_260_354, "macs": 36_000_000,
        ...      "time_per_step_s": 0.112, "status": "COMPLETED"},
        ...     {"trial_id": "1", "hyperparameters": {"se_ratio": 4}, "best_val_accuracy": 0.9806,
        ...      "final_val_accuracy": 0.9806, "params": 11_516_226, "macs": 36_300_000,
        ...      "time_per_step_s": 0.118, "status": "COMPLETED"},
        ... ]
        >>> print(format_table(results))
         trial hyperparameters                           val_acc       params   GMACs  s/step  status
             0 se_ratio=16                                0.9861   11,260,354   0.036   0.112  COMPLETED
             1 se_ratio=4                                 0.9806   11,516,226   0.036   0.118  COMPLETED
    """
    lines = [
        f"{'trial':>6} {'hyperparameters':<40} {'val_acc':>8} {'params':>12} {'GMACs':>7} {'s/step':>7}  status"
    ]
    for r in results:
        hp = ", ".join(f"{k}={v}" for k, v in r["hyperparameters"].items())
        acc = "-" if r["best_val_accuracy"] is None else f"{r['best_val_accuracy']:.4f}"
        params = "-" if r["params"] is None else f"{r['params']:,}"
        macs = "-" if not r["macs"] else f"{r['macs'] / 1e9:.3f}"
        step = "-" if r["time_per_step_s"] is None else f"{r['time_per_step_s']:.3f}"
        lines.append(
            f"{r['trial_id']:>6} {hp:<40} {acc:>8} {params:>12} {macs:>7} {step:>7}  {r['status']}"
        )
    return "\n".join(lines)


def summarize(oracle, out, *, export, verbose):
    """The end of a search: the results files and figures, the table, the best model.

    Args:
        oracle: the search's keras-tuner oracle (its trials).
        out: the search directory.
        export: also export the best model for TF Serving.
        verbose: print the table and where the best model went.

    Returns:
        The rows of `collect_results`, best first.

    Example:
        >>> results = summarize(load_tuner("runs/tune").oracle, "runs/tune", export=False, verbose=0)  # doctest: +SKIP
    """
    results = collect_results(oracle, out)
    write_results(results, out)
    if verbose:
        print(format_table(results))
    best = next((r for r in results if r["status"] == "COMPLETED"), None)
    if best is not None:
        save_best(os.path.join(out, PROJECT_NAME), best, out, export=export, verbose=verbose)
    return results


def save_best(project_dir, best, out, *, export, verbose):
    """``best_model.keras`` (and its preprocessing sidecar) and, with ``export``, a SavedModel.

    Args:
        project_dir: the keras-tuner project folder (``OUT/tuner``).
        best: the best trial's row of `collect_results`.
        out: the search directory.
        export: also export the best run for TF Serving (``OUT/serving/best``).
        verbose: print where they went.

    Example:
        >>> save_best("runs/tune/tuner", best, "runs/tune", export=True, verbose=1)  # doctest: +SKIP
        Best trial 1 ({'se_ratio': 16}): runs/tune/best_model.keras
    """
    import shutil

    from keras_se import data as data_lib

    source = trial_model_path(project_dir, best["trial_id"])
    target = os.path.join(out, "best_model.keras")
    with fileio.atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    preprocessing = data_lib.load_preprocessing(source)
    if preprocessing is not None:
        data_lib.save_preprocessing(target, preprocessing)
    if verbose:
        print(f"Best trial {best['trial_id']} ({best['hyperparameters']}): {target}")
    if export:
        from keras_se.export import export_model

        serving = os.path.join(out, "serving")
        if not os.path.isdir(os.path.join(serving, "best")):
            result = export_model(best["run_dir"], serving, name="best")
            if verbose:
                print(f"Exported the best model for TF Serving: {result.path}")
