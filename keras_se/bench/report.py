"""The reports of ``keras-se bench``: the machine, the JSON report, the BENCHMARKS.md tables.

`write_report` writes the JSON and puts `format_markdown`'s table between markers in a
markdown file (one section per `report_section`); `compare_reports` says how far two runs
of the same figures moved (``python -m keras_se.bench FIRST.json SECOND.json``).
"""

from __future__ import annotations

import json
import os
import platform

import keras

from keras_se_core.fileio import write_json, write_text


def machine_info():
    """The machine, its devices and the versions of Python, Keras, TensorFlow and JAX."""
    import importlib

    def version(module):
        try:
            return importlib.import_module(module).__version__
        except Exception:  # noqa: BLE001
            return None

    devices = []
    try:
        if keras.backend.backend() == "jax":
            import jax as jax_module

            devices = [str(d) for d in jax_module.devices()]
        else:
            import tensorflow as tf

            devices = [d.name for d in tf.config.list_logical_devices()]
    except Exception:  # noqa: BLE001 - device listing is informative only
        pass
    return {
        "devices": devices,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "tensorflow": version("tensorflow"),
        "jax": version("jax"),
    }


def format_markdown(report, *, command):
    """The BENCHMARKS.md table for a report."""
    m = report["machine"]
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, Python {m['python']}, Keras {m['keras']}, "
        f"TensorFlow {m['tensorflow']}, JAX {m['jax']}; mode: {report['mode']}."
        + (
            f" The JAX child allocates with {m['jax_allocator']}." if m.get("jax_allocator") else ""
        ),
    ]
    peer = report.get("peer")
    if peer:
        versions = ", ".join(f"{k} {v}" for k, v in sorted(peer.get("versions", {}).items()))
        diffs = peer.get("logit_diff", peer.get("logit_diff_float32"))
        lines[-1] += "  "
        lines.append(
            f"Peer: {versions}; "
            + (f"{peer['threads']} threads; " if "threads" in peer else "")
            + "max |logit diff| / max |logit|, "
            f"same weights: {json.dumps(diffs)}."
        )
    lines += [
        "",
        "| backend | figure | A | B | A median (min–max) | B median (min–max) | A/B median (min–max) | goal | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in report["figures"]:

        def cell(prefix, f=f, unit=f["unit"]):
            scale, u = (1000.0, "ms") if unit == "s" else (1.0, unit)
            return (
                f"{f[prefix + '_median'] * scale:.4g} {u} ({f[prefix + '_min'] * scale:.4g}–"
                f"{f[prefix + '_max'] * scale:.4g})"
            )

        spread = "" if f["ratio_min"] is None else f" ({f['ratio_min']:.3f}–{f['ratio_max']:.3f})"
        status = "—" if f["passed"] is None else ("met" if f["passed"] else "**missed**")
        lines.append(
            f"| {f['backend']} | {f['description']} | {f['a']} | {f['b']} | {cell('a')} | {cell('b')} | "
            f"{f['ratio']:.3f}{spread} | {f['goal'] or '—'} | {status} |"
        )
    if report.get("bf16"):
        lines += ["", *bf16_markdown(report["bf16"])]
    return "\n".join(lines)


def report_section(report):
    """The BENCHMARKS.md section a report belongs in: ``"gpu"``, ``"peer"``, ``"bf16"`` or ``""``
    (the main table)."""
    if report["mode"].endswith("-gpu"):
        return "gpu"
    if report.get("groups") in (["peer"], ["bf16"]):
        return report["groups"][0]
    return ""


def write_report(report, *, out=None, markdown=None, command="keras-se bench", section=""):
    """Writes the JSON report and, optionally, the table into a markdown file between markers.

    The markers are ``<!-- bench:begin -->``/``<!-- bench:end -->``, or
    ``<!-- bench-SECTION:begin -->``... for a ``section`` (`report_section`), so the peer
    and GPU tables live beside the main one.
    """
    if out:
        write_json(out, report, indent=2)
    if markdown:
        table = format_markdown(report, command=command)
        tag = f"bench-{section}" if section else "bench"
        begin, end = f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"
        text = (
            open(markdown).read()
            if os.path.exists(markdown)
            else f"# Benchmarks\n\n{begin}\n{end}\n"
        )
        if begin not in text:
            text += f"\n{begin}\n{end}\n"
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        write_text(markdown, f"{head}{begin}\n{table}\n{end}{tail}")
    return report


def compare_reports(first, second):
    """How far the medians of two reports of the same figures differ (run-to-run stability).

    Args:
        first, second: report dicts or JSON paths (e.g. two ``keras-se bench --only jax`` runs).

    Returns:
        One ``(backend, name, description, a_change, b_change, ratio_change)`` per figure present in
        both, the changes relative to ``first`` (0.01 = +1 %).
    """

    def figures(report):
        if not isinstance(report, dict):
            with open(report) as f:
                report = json.load(f)
        return {(f["backend"], f["name"], f["description"]): f for f in report["figures"]}

    a, b = figures(first), figures(second)
    return [
        (*key, *(b[key][k] / a[key][k] - 1 for k in ("a_median", "b_median", "ratio")))
        for key in a
        if key in b
    ]


def bf16_markdown(info):
    """The lines under the bf16 table: agreement, oneDNN kernels, load averages."""
    lines = [
        f"Model: {info['model']} at {info['size']}x{info['size']}, {info['macs'] / 1e9:.4g} GMACs per image."
    ]
    for key, a in info.get("agreement", {}).items():
        accuracy = "".join(
            f", accuracy {p} {a[f'accuracy_{p}']:.4f}"
            for p in ("float32", "bfloat16")
            if f"accuracy_{p}" in a
        )
        lines.append(
            f"Agreement of the bfloat16 with the float32 SavedModel, {key} ({a['images']} images): "
            f"top-1 {a['top1_agreement']:.4f}, top-5 overlap {a['top5_overlap']:.4f}, "
            f"max |Δprobability| {a['max_abs_diff']:.3g}{accuracy}."
        )
    onednn = info.get("onednn") or {}
    lines.append(f"oneDNN (ONEDNN_VERBOSE=1) ISA: {onednn.get('isa')}; kernels executed per phase:")
    lines += ["", "| phase | primitive implementation (dtypes) | calls | ms |", "|---|---|---|---|"]
    for phase, kernels in onednn.items():
        if phase == "isa":
            continue
        for key, entry in sorted(kernels.items(), key=lambda kv: -kv[1]["ms"]):
            lines.append(f"| {phase} | {key} | {entry['count']} | {entry['ms']:.1f} |")
        if not kernels:
            lines.append(f"| {phase} | (no oneDNN primitive) | 0 | 0 |")
    loads = ", ".join(f"{step} {b}→{a}" for step, b, a in info.get("loadavg", []))
    lines += ["", f"Load average (1 min) before→after each measurement: {loads}."]
    return lines


def main(argv=None):
    """Prints `compare_reports` of the two JSON reports named in ``argv`` (one line a figure)."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    for backend, name, _, da, db, dr in compare_reports(*argv[0:2]):
        print(f"{backend:10s} {name:32s} A {da:+.1%}  B {db:+.1%}  A/B {dr:+.1%}")
    return 0
