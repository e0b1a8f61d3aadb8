"""scripts/trace_summary.py: one step's GPU busy and idle time from a profiler trace."""

import importlib.util
from pathlib import Path

import pytest


def _script():
    path = Path(__file__).resolve().parents[2] / "scripts" / "trace_summary.py"
    spec = importlib.util.spec_from_file_location("trace_summary", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trace(*kernels):
    """Chrome-trace events: (name, start us, duration us); a CPU op that must be ignored."""
    events = [{"ph": "X", "cat": "kernel", "name": n, "ts": t, "dur": d} for n, t, d in kernels]
    return {"traceEvents": events + [{"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 10_000}]}


def test_the_window_is_the_last_step_and_overlaps_count_once():
    summary = _script().summarize(_trace(
        ("multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata>", 0, 100),    # step 1 ends at 100
        ("sm90_xmma_gemm_bf16", 100, 400),              # first step, outside the window
        ("multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata>", 500, 50),   # step 2's optimizer: two kernels,
        ("multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata>", 550, 50),   # it ends at 600: the window opens
        ("sm90_xmma_gemm_bf16", 650, 300),         # 50 idle before it
        ("cudnn_generated_fmha_fprop", 800, 300),  # overlaps the GEMM by 150
        ("triton_poi_fused_mul_0", 1200, 100),     # 100 idle before it
        ("multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata>", 1400, 150),  # 100 idle before it
        ("multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata>", 1550, 50),   # the window closes at 1600
    ))
    assert summary["step_wall_ms"] == 1.0
    assert summary["gpu_busy_ms"] == 0.75 and summary["gpu_idle_ms"] == 0.25
    assert summary["kernel_ms_by_category"] == {"gemm": 0.3, "attention": 0.3, "optimizer": 0.2,
                                                "inductor (fused pointwise / norm / reduction)": 0.1}
    gaps = summary["longest_gaps"]
    assert [g["ms"] for g in gaps] == [0.1, 0.1, 0.05]
    assert gaps[-1] == {"ms": 0.05, "after": "(window start)", "before": "sm90_xmma_gemm_bf16"}


def test_a_trace_without_two_step_boundaries_is_refused():
    with pytest.raises(ValueError, match="no complete step"):
        _script().summarize(_trace(("multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata>", 0, 100), ("gemm", 100, 10)))
