"""The figures of a reduction-ratio search (`keras_se.tuning`): the paper's Table 10 trade-off.

4. `plot_ratio_tradeoff`: accuracy against parameters for each reduction ratio.
5. `plot_specificity_by_ratio`: what each ratio learned, the class-specificity by depth.

Both read the parsed ``results.json`` of a search and write ``.png`` and ``.svg``
(`keras_se.figures.save_figure`); re-exported by `keras_se.visualize`.
"""

from __future__ import annotations

import numpy as np

from keras_se.figures import new_figure, save_figure
from keras_se_core.errors import UsageError


# --------------------------------------------------------------------------- figure 4
def _ratio_points(results):
    """Best completed trial per ``se_ratio``: ``[(ratio, params, accuracy)]`` sorted by ratio."""
    if isinstance(results, dict) and "trials" in results:
        results = results["trials"]
    if not isinstance(results, (list, tuple)):
        raise TypeError(
            f"`results` must be the list of trial dicts of a tuner results.json. Received: {type(results).__name__}"
        )
    best = {}
    for trial in results:
        if trial.get("status", "COMPLETED") != "COMPLETED":
            continue
        accuracy = trial.get("best_val_accuracy")
        if accuracy is None:
            continue
        ratio = (trial.get("hyperparameters") or {}).get("se_ratio")
        if ratio not in best or accuracy > best[ratio][1]:
            best[ratio] = (trial.get("params"), float(accuracy))
    if not best:
        raise UsageError(
            "`results` holds no completed trial with a best_val_accuracy to draw. "
            f"Received: {len(results)} trials"
        )

    def key(ratio):  # the plain model (ratio None or 0) last
        return (not ratio, float(ratio) if ratio else 0.0)

    return [(r, *best[r]) for r in sorted(best, key=key)]


def ratio_tradeoff_figure(results):
    """Accuracy vs parameters per reduction ratio (see `plot_ratio_tradeoff`).

    Example (a matplotlib ``Figure``):
        >>> trials = [{"hyperparameters": {"se_ratio": r}, "best_val_accuracy": a,
        ...            "params": p, "status": "COMPLETED"}
        ...           for r, a, p in [(4, 0.91, 1.2e6), (16, 0.90, 1.1e6)]]
        >>> len(ratio_tradeoff_figure(trials).axes)
        1
    """
    points = _ratio_points(results)
    fig = new_figure(6, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    with_params = all(p is not None for _, p, _ in points)
    xs = [p / 1e6 if with_params else i for i, (_, p, _) in enumerate(points)]
    ys = [a for _, _, a in points]
    ax.plot(xs, ys, color="0.6", lw=1, zorder=1)
    ax.scatter(xs, ys, color="tab:blue", zorder=2)
    for x, y, (ratio, _, _) in zip(xs, ys, points):
        label = "no SE" if not ratio else f"r={ratio:g}"
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.set_xlabel("parameters (millions)" if with_params else "trial")
    ax.set_ylabel("best validation accuracy")
    ax.set_title("Reduction ratio trade-off (best trial per ratio)", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def plot_ratio_tradeoff(results, out_path_without_ext):
    """Figure 4: the reduction-ratio trade-off of a tuner search (paper Table 10).

    One labelled point per ``se_ratio``: x = parameters, y = best validation accuracy
    of the best completed trial with that ratio (failed or running trials are skipped).

    Args:
        results: the parsed ``results.json`` of `keras_se.tuning`: a list of trial
            dicts with ``"hyperparameters"`` (holding ``"se_ratio"``),
            ``"best_val_accuracy"``, ``"params"`` and ``"status"``.
        out_path_without_ext: where to write ``.png`` and ``.svg``.

    Returns:
        ``(png_path, svg_path)``.

    Example:
        >>> trials = [{"hyperparameters": {"se_ratio": r}, "best_val_accuracy": a,
        ...            "params": p, "status": "COMPLETED"}
        ...           for r, a, p in [(4, 0.91, 1.2e6), (16, 0.90, 1.1e6)]]
        >>> plot_ratio_tradeoff(trials, "figs/ratio_tradeoff")  # doctest: +SKIP
        ('figs/ratio_tradeoff.png', 'figs/ratio_tradeoff.svg')
    """
    return save_figure(ratio_tradeoff_figure(results), out_path_without_ext)


def specificity_by_ratio_figure(results):
    """Specificity by depth, one line per trial's reduction ratio (see `plot_specificity_by_ratio`).

    Example (a matplotlib ``Figure``):
        >>> trials = [{"hyperparameters": {"se_ratio": r}, "specificity": s,
        ...            "blocks": ["SE_2_1", "SE_3_1"], "status": "COMPLETED"}
        ...           for r, s in [(4, [0.3, 0.6]), (16, [0.35, 0.55])]]
        >>> fig = specificity_by_ratio_figure(trials)
        >>> [line.get_label() for line in fig.axes[0].get_lines()]
        ['r=4', 'r=16']
    """
    if isinstance(results, dict) and "trials" in results:
        results = results["trials"]
    trials = [
        t for t in results if t.get("specificity") and t.get("status", "COMPLETED") == "COMPLETED"
    ]
    if not trials:
        raise UsageError(
            "`results` holds no completed trial with per-block specificity (tuning records it "
            f"from the trial's last-epoch excitation analysis). Received: {len(results)} trials"
        )
    fig = new_figure(max(5.5, 0.4 * len(trials[0]["specificity"]) + 2.5), 3.8)
    ax = fig.add_subplot(1, 1, 1)

    def ratio(trial):
        return (trial.get("hyperparameters") or {}).get("se_ratio") or 0

    for trial in sorted(trials, key=ratio):
        values = [np.nan if v is None else v for v in trial["specificity"]]
        ax.plot(range(len(values)), values, marker="o", lw=1.2, label=f"r={ratio(trial):g}")
    blocks = trials[0].get("blocks") or [str(i + 1) for i in range(len(trials[0]["specificity"]))]
    ax.set_xticks(range(len(blocks)))
    ax.set_xticklabels(blocks, rotation=90, fontsize=7)
    ax.set_xlabel("SE block (network order)")
    ax.set_ylabel("class-specificity η²")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, title="reduction ratio", title_fontsize=8)
    ax.set_title("What each ratio learned: specificity by depth after training", fontsize=10)
    return fig


def plot_specificity_by_ratio(results, out_path_without_ext):
    """Specificity by depth of each trial of a ratio search, one line per ``se_ratio``.

    Args:
        results: the parsed ``results.json`` of `keras_se.tuning`: trial dicts with
            ``"hyperparameters"`` (``"se_ratio"``), ``"specificity"`` (one value per SE block,
            from the trial's last-epoch excitation analysis), ``"blocks"`` (their labels) and
            ``"status"``.
        out_path_without_ext: where to write ``.png`` and ``.svg``.

    Returns:
        ``(png_path, svg_path)``.

    Example:
        >>> trials = [{"hyperparameters": {"se_ratio": r}, "specificity": s,
        ...            "blocks": ["SE_2_1", "SE_3_1"], "status": "COMPLETED"}
        ...           for r, s in [(4, [0.3, 0.6]), (16, [0.35, 0.55])]]
        >>> plot_specificity_by_ratio(trials, "figs/specificity_by_ratio")  # doctest: +SKIP
        ('figs/specificity_by_ratio.png', 'figs/specificity_by_ratio.svg')
    """
    return save_figure(specificity_by_ratio_figure(results), out_path_without_ext)
