"""keras_se.bench.report: the markdown sections and the run-to-run comparison."""

from __future__ import annotations

import json

import pytest

from keras_se.bench import report
from keras_se.bench.harness import Figure


@pytest.mark.slow
def test_compare_reports(tmp_path):
    first = {"figures": [Figure("x", "d", "A", "B", [1.0], [2.0]).as_dict()]}
    second = {"figures": [Figure("x", "d", "A", "B", [1.1], [2.0]).as_dict()]}
    (tmp_path / "b.json").write_text(json.dumps(second))
    [(backend, name, _, da, db, dr)] = report.compare_reports(first, str(tmp_path / "b.json"))
    assert (backend, name, db) == ("", "x", 0.0)
    assert da == pytest.approx(0.1) and dr == pytest.approx(0.1)


@pytest.mark.slow
def test_write_report_keeps_sections_apart(tmp_path):
    markdown = tmp_path / "B.md"
    figure = Figure("peer_inference", "d", "A", "B", [1.0], [2.0]).as_dict()
    machine = report.machine_info()
    main = {
        "machine": machine,
        "mode": "quick",
        "groups": ["layer"],
        "figures": [figure],
    }
    peer = dict(main, groups=["peer"], peer={"versions": {"torch": "x"}, "logit_diff": {}})
    report.write_report(main, markdown=str(markdown), section=report.report_section(main))
    report.write_report(peer, markdown=str(markdown), section=report.report_section(peer))
    text = markdown.read_text()
    assert report.report_section(peer) == "peer" and report.report_section(main) == ""
    assert text.count("<!-- bench:begin -->") == 1 and text.count("<!-- bench-peer:begin -->") == 1
    assert "Peer: torch x" in text.split("<!-- bench-peer:begin -->")[1]
