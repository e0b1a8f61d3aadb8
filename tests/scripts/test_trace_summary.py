"""scripts/trace_summary.py: one step's GPU busy and idle time from a profiler trace."""

import pytest


def _trace(*kernels):
    """Chrome-trace events: (name, start us, duration us); a CPU op that must be ignored."""
    events = [{"ph": "X", "cat": "kernel", "name": n, "ts": t, "dur": d} for n, t, d in kernels]
    return {"traceEvents": events + [{"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 10_000}]}


ADAM = "multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata, FusedAdamMathFunctor>"
NORM = "multi_tensor_apply_kernel<TensorListMetadata<1>, LpNormFunctor>"  # "Norm": a later category's word too
SCALE = "multi_tensor_apply_kernel<TensorListMetadata<1>, BinaryOpScalarTensorFunctor, multiplies>"


def _step(t0, body):
    """One step from t0: its kernels (name, offset, duration), then clipping and AdamW with two other kernels
    between the norm and the scaling (join=2 keeps them one cluster), ending at t0 + 1000."""
    return [(n, t0 + o, d) for n, o, d in body] + [
        (NORM, t0 + 900, 10), ("reduce_kernel<sum>", t0 + 910, 10), ("vectorized_elementwise_kernel<clamp>", t0 + 920, 10),
        (SCALE, t0 + 930, 20), (ADAM, t0 + 950, 30), (ADAM, t0 + 980, 20)]


def test_the_window_is_the_last_step_and_overlaps_count_once(script):
    filler = [(f"vectorized_elementwise_kernel<{i}>", 100 + 10 * i, 10) for i in range(3)]  # join + 1 kernels
    last = [
        ("sm90_xmma_gemm_bf16", 50, 300),                            # 50 idle before it
        ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop", 200, 300),  # overlaps the GEMM by 150
        ("triton_poi_fused__scaled_dot_product_cudnn_attention_cat_0", 600, 100),  # inductor's; 100 idle before
    ]                                                                # 200 idle before the clipping norm
    trace = _trace(*_step(0, filler), *_step(1000, filler), *_step(2000, last))
    summary = script("trace_summary").summarize(trace, join=2)
    assert summary["step_wall_ms"] == 1.0  # from the end of step 2's AdamW to the end of step 3's
    assert summary["gpu_busy_ms"] == 0.65 and summary["gpu_idle_ms"] == 0.35
    assert summary["kernel_ms_by_category"] == {
        "gemm": 0.3, "attention": 0.3, "optimizer and gradient clipping (foreach / fused)": 0.08,
        "inductor (fused pointwise / norm / reduction)": 0.1, "aten elementwise / reduction": 0.02}
    assert summary["top_kernels_ms"][NORM] == 0.01 and summary["top_kernels_ms"][SCALE] == 0.02  # not merged
    gaps = summary["longest_gaps"]
    assert [g["ms"] for g in gaps] == [0.2, 0.1, 0.05]
    assert gaps[-1] == {"ms": 0.05, "after": "(window start)", "before": "sm90_xmma_gemm_bf16"}


def test_steps_apart_by_more_than_join_kernels_are_two_steps(script):
    body = [(f"vectorized_elementwise_kernel<{i}>", 100 + 10 * i, 10) for i in range(3)]  # join + 1 = 3 kernels
    summary = script("trace_summary").summarize(_trace(*_step(0, body), *_step(1000, body)), join=2)
    assert summary["step_wall_ms"] == 1.0
    # only join = 2 kernels between step 2's AdamW and step 3's clipping: read as one step, so the
    # last window runs from step 1's end to step 3's
    squeezed = [(f"vectorized_elementwise_kernel<{i}>", 100 + 10 * i, 10) for i in range(2)]
    summary = script("trace_summary").summarize(_trace(*_step(0, body), *_step(1000, body), *_step(2000, squeezed)), join=2)
    assert summary["step_wall_ms"] == 2.0


def test_a_trace_without_two_step_boundaries_is_refused(script):
    with pytest.raises(ValueError, match="fewer than two optimizer steps"):
        script("trace_summary").summarize(_trace(("multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata>", 0, 100), ("gemm", 100, 10)))
