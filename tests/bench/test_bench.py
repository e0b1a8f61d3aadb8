import pytest
import torch
from accelerate import init_empty_weights

from hprune.bench import measure
from hprune.bench.archs import build_transformer, get_arch, make_inputs
from hprune.bench.plans import AUTHORS_SD35_LARGE, late_blocks_plan, plan_from_file, published_plan, remove_last_plan
from hprune.bench.runner import BenchConfig, _finish, markdown_row, with_encoders
from hprune.core.errors import HpruneError

TINY = dict(num_layers=4, num_attention_heads=2, attention_head_dim=16, joint_attention_dim=32, caption_projection_dim=32,
            pooled_projection_dim=16, pos_embed_max_size=16, sample_size=8)
TINY_FLUX = dict(num_layers=2, num_single_layers=4, num_attention_heads=2, attention_head_dim=16, joint_attention_dim=32,
                 pooled_projection_dim=16, axes_dims_rope=(4, 6, 6))


def full_size(name):
    with init_empty_weights():
        return build_transformer(get_arch(name), device="cpu")


def test_published_sizes_match_the_model_cards():
    assert abs(sum(p.numel() for p in full_size("sd3.5-large").parameters()) / 1e9 - 8.06) < 0.01
    assert abs(sum(p.numel() for p in full_size("flux.1-schnell").parameters()) / 1e9 - 11.89) < 0.01


def test_authors_plan_is_the_20_percent_plan_of_sd35_large():
    plan = published_plan("sd3.5-large", full_size("sd3.5-large"), 0.2)
    assert plan.units == AUTHORS_SD35_LARGE and 0.21 < plan.ratio_reached < 0.22


def test_late_block_plans_reach_the_ratio_from_both_flux_streams():
    model = full_size("flux.1-schnell")
    plan = late_blocks_plan(model, 0.3)
    assert 0.3 <= plan.ratio_reached < 0.32
    kinds = {u.kind for u in plan.units}
    assert kinds == {"joint", "single"} and max(u.index for u in plan.units if u.kind == "single") == 37


def test_remove_last_skips_the_unremovable_last_sd3_block():
    plan = remove_last_plan(full_size("sd3.5-large"), 2)
    assert [u.index for u in plan.units] == [35, 36]
    with pytest.raises(HpruneError, match="--remove-last must be between"):
        remove_last_plan(full_size("sd3.5-large"), 99)


def test_plan_file_for_another_arch_is_refused(tmp_path):
    published_plan("sd3.5-large", full_size("sd3.5-large"), 0.2).save(tmp_path / "p.json")
    assert plan_from_file(tmp_path / "p.json", full_size("sd3.5-large")).units == AUTHORS_SD35_LARGE
    with pytest.raises(HpruneError, match="another architecture"):
        plan_from_file(tmp_path / "p.json", full_size("sd3.5-medium"))


@pytest.mark.parametrize("name,tiny", [("sd3.5-large", TINY), ("sd3.5-medium", dict(TINY, dual_attention_layers=(0, 1))), ("flux.1-dev", TINY_FLUX)])
def test_tiny_builds_take_the_inputs_of_their_arch(name, tiny):
    arch = get_arch(name)
    model = build_transformer(arch, device="cpu", **tiny)
    assert next(model.parameters()).dtype == torch.bfloat16
    kw = make_inputs(arch, model, resolution=64 if arch.family == "sd3" else 128, text_tokens=7)
    with torch.no_grad():
        out = model(**kw).sample
    assert out.shape == kw["hidden_states"].shape


def test_bench_config_validates_and_needs_a_gpu():
    with pytest.raises(HpruneError) as err:
        BenchConfig(arch="sd3.5-large", resolution=1000, repeats=3, batch=0)
    assert all(flag in str(err.value) for flag in ("--resolution", "--repeats", "--batch"))
    with pytest.raises(HpruneError, match="unknown --arch"):
        BenchConfig(arch="sdxl")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_bench_command_says_a_gpu_is_needed(capsys):
    from hprune.cli import main

    assert main(["bench", "--arch", "sd3.5-large", "--ratio", "0.2"]) == 1
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_rows_carry_the_issue_keys_and_ratios():
    base = {"arch": "a", "variant": "original", "ratio": 0.0, "quant": "bf16", "compiled": True, "params": 8e9, "weights_gib": 15.0,
            "peak_gib": 16.0, "step_ms": 70.0, "steps": 4, "total_ms": 280.0, "device": "H100", "torch": "2.11"}
    eager = dict(base, compiled=False, step_ms=100.0)
    row = _finish(dict(base, variant="pruned-20%", quant="w4fp8", step_ms=35.0, peak_gib=3.2, weights_gib=3.0), base, eager)
    assert list(row)[:14] == ["arch", "variant", "ratio", "quant", "compiled", "params", "weights_gib", "peak_gib", "step_ms",
                              "speedup_vs_bf16", "speedup_vs_bf16_eager", "memory_ratio", "device", "torch"]
    assert row["speedup_vs_bf16"] == 2.0 and row["speedup_vs_bf16_eager"] == round(100 / 35, 3) and row["memory_ratio"] == 0.2
    assert "| 2.00 |" in markdown_row(row)
    enc = with_encoders(row, {"t5_quant": "bnb-nf4", "weights_gib": 3.0, "peak_gib": 3.5})
    assert enc["peak_gib_total"] == max(3.2 + 3.0, 3.5 + 3.0)


def test_graph_rows_are_labelled_and_compared_in_their_own_mode():
    from hprune.bench.runner import _mode

    row = {"compiled": True, "cuda_graph": True}
    assert _mode(row) == "compiled+graph" and _mode({"compiled": True}) == "compiled" and _mode({"compiled": False}) == "eager"
    base = {"arch": "a", "variant": "original", "ratio": 0.0, "quant": "bf16", "compiled": True, "params": 8e9, "weights_gib": 15.0,
            "peak_gib": 16.0, "step_ms": 66.0, "steps": 4, "total_ms": 264.0, "device": "H200", "torch": "2.11", "cuda_graph": True}
    r = _finish(dict(base, variant="pruned-20%", quant="w4fp8-perrow", step_ms=44.0), base, None)
    assert r["speedup_vs_bf16"] == 1.5 and "| compiled+graph |" in markdown_row(r)


def test_kernel_names_fall_into_categories():
    assert measure.categorize("sm90_xmma_gemm_bf16bf16_bf16f32") == "linear (gemm)"
    assert measure.categorize("_w4fp8_kernel") == "linear (gemm)"
    assert measure.categorize("_w4fp8_swapped_kernel") == "linear (gemm)"
    assert measure.categorize("_unpack_kernel") == "quant/dequant"
    assert measure.categorize("flash_fwd_kernel") == "attention"
    assert measure.categorize("triton_poi_fused_add_mul_0") == "elementwise/other"


@pytest.mark.gpu
def test_bench_runs_medium_at_low_resolution(tmp_path):
    from hprune.bench.plans import published_plan as plan
    from hprune.bench.runner import Variant, run

    cfg = BenchConfig(arch="sd3.5-medium", resolution=256, steps=2,
                      variants=[Variant("pruned-30%", lambda m: plan("sd3.5-medium", m, 0.3), "w4fp8", crop_to=256)])
    rows, extras = run(cfg)
    assert [r["variant"] for r in rows] == ["original", "pruned-30%"] and not extras.get("failed")
    assert rows[1]["weights_gib"] < 0.35 * rows[0]["weights_gib"] and rows[1]["peak_gib"] < rows[0]["peak_gib"]
    assert rows[1]["pos_embed_cropped"] and not rows[0]["pos_embed_cropped"]
