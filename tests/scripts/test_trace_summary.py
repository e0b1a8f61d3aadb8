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
    adam, norm = "multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata>", "multi_tensor_apply_kernel<LpNormFunctor>"
    summary = _script().summarize(_trace(
        (adam, 0, 100),                                 # step 1 ends at 100
        ("sm90_xmma_gemm_bf16", 100, 400),              # first step, outside the window
        (adam, 500, 50),                                # step 2's optimizer: two kernels
        (adam, 550, 50),                                # ending at 600: the window opens
        ("sm90_xmma_gemm_bf16", 650, 300),              # 50 idle before it
        ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop", 800, 300),  # overlaps the GEMM by 150
        ("triton_poi_fused__scaled_dot_product_cudnn_attention_cat_0", 1200, 100),  # inductor's; 100 idle before
        (norm, 1380, 10),                               # gradient clipping's norm, 80 idle before;
        ("reduce_kernel<sum>", 1390, 10),               # one other kernel, then the optimizer:
        (adam, 1400, 150),                              # one step boundary, not two
        (adam, 1550, 50),                               # the window closes at 1600
    ), join=2)
    assert summary["step_wall_ms"] == 1.0
    assert summary["gpu_busy_ms"] == 0.77 and summary["gpu_idle_ms"] == 0.23
    assert summary["kernel_ms_by_category"] == {"gemm": 0.3, "attention": 0.3,
                                                "optimizer and gradient clipping (foreach / fused)": 0.21,
                                                "inductor (fused pointwise / norm / reduction)": 0.1,
                                                "aten elementwise / reduction": 0.01}
    gaps = summary["longest_gaps"]
    assert [g["ms"] for g in gaps] == [0.1, 0.08, 0.05]
    assert gaps[-1] == {"ms": 0.05, "after": "(window start)", "before": "sm90_xmma_gemm_bf16"}


def test_a_trace_without_two_step_boundaries_is_refused():
    with pytest.raises(ValueError, match="no complete step"):
        _script().summarize(_trace(("multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata>", 0, 100), ("gemm", 100, 10)))
