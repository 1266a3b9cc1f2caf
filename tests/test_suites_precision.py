"""keras_se.bench.suites_precision: the bfloat16 export rows, agreement and the oneDNN summary."""

from __future__ import annotations

import numpy as np
import pytest

from keras_se.bench import report as report_lib
from keras_se.bench import suites, suites_precision
from keras_se.bench.harness import GOALS


def test_agreement_counts_top1_top5_and_the_largest_difference():
    reference = np.array([[0.7, 0.1, 0.1, 0.05, 0.03, 0.02], [0.3, 0.31, 0.2, 0.1, 0.05, 0.04]])
    other = reference.copy()
    other[1, :2] = [
        0.32,
        0.29,
    ]  # the near-tie swaps its top class; top-5 sets unchanged
    result = suites_precision.agreement(reference, other)
    assert result["images"] == 2 and result["top1_agreement"] == 0.5
    assert result["top5_overlap"] == 1.0
    assert result["max_abs_diff"] == pytest.approx(0.02)
    other[0] = [
        0.02,
        0.1,
        0.1,
        0.05,
        0.03,
        0.7,
    ]  # the last class enters image 0's top 5
    assert suites_precision.agreement(reference, other)["top5_overlap"] == pytest.approx(
        (4 / 5 + 1) / 2
    )


def test_parse_onednn_verbose_sums_each_phases_kernels():
    mark = suites_precision.ONEDNN_MARK
    fields = "src_bf16::blocked:acdb::f0 wei_bf16:a:blocked:AcdB64a2b::f0 dst_f32::blocked:acdb::f0"
    amx = f"onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core_amx,forward_inference,{fields},,alg:convolution_direct,mb8_ic64oc64_ih56oh56kh3,"
    text = "\n".join(
        [
            "onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with AMX",
            amx + "9.5",  # before the first mark: the untimed call, not counted
            mark + "forward",
            amx + "1.25",
            amx + "0.75",
            "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src_f32::blocked:abcd::f0 dst_bf16::blocked:acdb::f0,,,8x64x56x56,0.5",
            mark + "end",
            "I0000 tensorflow noise",
            mark + "train_step",
            mark + "end",
        ]
    )
    result = suites_precision.parse_onednn_verbose(text)
    assert result["isa"] == "Intel AVX-512 with AMX"
    assert result["forward"] == {
        "convolution brg_conv_fwd:avx512_core_amx (bf16/f32)": {"count": 2, "ms": 2.0},
        "reorder jit:uni (bf16/f32)": {"count": 1, "ms": 0.5},
    }
    assert result["train_step"] == {}
    lines = report_lib.bf16_markdown(
        {
            "model": "m",
            "size": 8,
            "macs": 2e9,
            "onednn": result,
            "loadavg": [["x", 1.0, 2.0]],
        }
    )
    assert "| forward | convolution brg_conv_fwd:avx512_core_amx (bf16/f32) | 2 | 2.0 |" in lines
    assert "| train_step | (no oneDNN primitive) | 0 | 0 |" in lines
    assert lines[-1] == "Load average (1 min) before→after each measurement: x 1.0→2.0."


@pytest.mark.bench
@pytest.mark.integration
def test_bf16_group_quick(tmp_path):
    """``keras-se bench --only bf16 --quick``: every row, the agreement, the oneDNN child."""
    report = suites.run_benchmarks(quick=True, only="bf16", verbose=0)
    settings = suites.SETTINGS["quick"]["bf16"]
    assert report["groups"] == ["bf16"] and report_lib.report_section(report) == "bf16"
    names = [f["name"] for f in report["figures"]]
    assert names == [f"bf16_export_speedup_b{b}" for b in settings["batches"]] + [
        "serving_overhead",
        "peak_matmul",
        "peak_conv3x3",
        "share_of_peak_inference_float32",
        "share_of_peak_train_step_float32",
        "share_of_peak_inference_bfloat16",
        "share_of_peak_train_step_bfloat16",
    ]
    by_name = {f["name"]: f for f in report["figures"]}
    assert by_name["serving_overhead"]["goal"] == "<= 1.03"
    assert GOALS["bf16_export_speedup_b64"] == (">=", 1.5)
    assert {by_name[n]["unit"] for n in names if n.startswith(("peak", "share"))} == {"GFLOP/s"}
    assert all(f["ratio"] > 0 and f["repetitions"] >= 2 for f in report["figures"])
    info = report["bf16"]
    assert info["macs"] > 0 and info["model"] == settings["model"]
    [agreement] = info["agreement"].values()
    assert agreement["images"] == settings["batches"][-1] and agreement["max_abs_diff"] < 0.05
    assert info["onednn"]["isa"] and {"forward", "train_step"} <= set(info["onednn"])
    assert [step for step, _, _ in info["loadavg"]][-1] == "onednn"
    text = report_lib.format_markdown(report, command="keras-se bench --only bf16 --quick")
    assert "oneDNN (ONEDNN_VERBOSE=1) ISA:" in text and "Load average" in text
    assert "Agreement of the bfloat16 with the float32 SavedModel" in text
