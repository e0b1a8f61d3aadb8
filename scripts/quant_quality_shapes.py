"""Where the w4fp8 loss of the distilled shapes students comes from, and which cheap fix helps (val split only).

    PYTHONPATH=src python scripts/quant_quality_shapes.py --per-category 8 \\
        [--students /tmp/dev/students] [--out results/quant_quality_shapes.json]

Models: every `{teacher}-{row}.safetensors` student of --students ("_" in the file name stands for
"+" in the row name; rebuilt from the row's plan in results/tables/{teacher}/{row}/plan.json), and
the two teachers. Variants of each (all on the linears of `quantize_(model, QuantConfig("w4fp8", skip=()))`):

  none       float32 (the students' bf16 weights, widened)
  w4fp8      int4 weights, one bf16 absmax scale per row, FP8 e4m3 activations per token, every linear
             (the default until 2026-12-01; the default now is w4fp8-keep-io)
  w4fp8-g64  the same with one scale per 64 inputs;  w4fp8-g32: per 32 inputs
  w4-only    int4 per-row weights (pack_int4 -> unpack_int4), activations in float32: the weight error alone
  a8-only    float32 weights, activations through w4fp8.quantize_tokens: the activation error alone
  w4fp8-mse  per-row scales ratio * absmax / 7 with the ratio of RATIOS (0.50..1.00) that minimises the
             row's squared weight error (`pack_int4_mse`, same packed format as pack_int4), FP8 activations
  w4fp8-keep-out, w4fp8-mse-keep-out
             w4fp8 / w4fp8-mse, but the final output projection `proj_out` (112 or 128 -> 48: it writes
             the velocity itself) stays float32, i.e. QuantConfig(skip=("proj_out",))
  w4fp8-gptq[-keep-io]
             int4 per-row absmax scales, codes rounded by GPTQ (hprune.quant.gptq) against the inputs
             of the model's own sampling of CALIB_PER_CATEGORY train prompts per category (phase 2 only)
  w4fp8-keep-io, w4fp8-mse-keep-io
             the same, also keeping the input embedders (x_embedder: FLUX's 48 -> 128 pixel-patch
             embedding; context_embedder) float32: QuantConfig(skip=("proj_out", "x_embedder",
             "context_embedder")). Added after the first phase-1 results showed that these first and
             last layers alone carry most of the error; at real scale they are small (x_embedder 64 ->
             3072, proj_out 3072 -> 64, context_embedder 4096 -> 2432 or 3072: ~0.1% of the weights).
             hprune.quant.names.DEFAULT_SKIP: what `hprune quantize --backend w4fp8` keeps by default

Phase 1 (seconds per model): relative error of the Euler updates, dt_i * guided velocity, over one
sampling run (PHASE1_PROMPTS val prompts, eval_steps steps, the teacher's own trajectory), of each
variant against `none`; plus the same for w4fp8 applied to one group of layers at a time (adaLN
modulation, attention, MLP, timestep/pooled-text embedders, input embedders, output projection
proj_out) and each variant's relative weight error.
Phase 2 (minutes per model): val-split degradation (hprune.experiments.ablate.degradation against
the teacher's float32 val scores, same prompts and seeds) of none, w4fp8, w4-only, a8-only and the
fixes phase 1 ranks best (the best fix overall, plus the best per-row fix if that is another one),
for the students (teachers with --phase2-teachers): the best per-row fix (keeps the fast cuBLAS path)
and the best group fix (needs the slower fused kernel). `added` = degradation - degradation(none), with
a paired standard error over images (same prompts and seeds in every variant).

Speed: the CPU reference of W4Fp8Linear (padding to 128 inputs, unpacking per call) is about 2.4x
slower than float32 here; phase 2 therefore runs `FakeQuantLinear`: the same int4 weights
dequantized once with unpack_int4, activations through quantize_tokens, F.linear in float32 - the
reference's numerics up to float32 summation order. Phase 1 runs w4fp8 and w4fp8-mse through the
real W4Fp8Linear as well (rows `w4fp8 [real]`, `w4fp8-mse [real]`) so the two can be compared;
`--exact` makes phase 2 use W4Fp8Linear too. (FP8 rounding makes a network chaotic in the last
bits: two float32 summation orders give outputs that differ by about as much as the quantization
noise itself, while the size of that noise, which is what is measured, agrees to ~1e-3.)

Results are saved after every evaluation; a rerun with the same --out and settings resumes.
Never touches the test split.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hprune.quant import replace_module
from hprune.quant.names import KEEP_IO
from hprune.quant.w4fp8 import (
    SKINNY_MAX_M, TILE_K, W4Fp8Linear, _pad_inputs, pack_int4, padded_k, quantize_tokens, unpack_int4,
)

RATIOS = tuple(round(0.50 + 0.02 * i, 2) for i in range(26))  # clip ratios searched: 0.50, 0.52, ..., 1.00
TEACHERS = ("shapes-sd3", "shapes-flux")
PHASE1_PROMPTS = 4  # val prompts (categories 0, 2, 4, 6; one image each) of the phase-1 sampling run
# candidate fix -> keeps one scale per row (the fast cuBLAS path)
FIXES = {"w4fp8-g64": False, "w4fp8-g32": False, "w4fp8-mse": True, "w4fp8-keep-out": True, "w4fp8-mse-keep-out": True,
         "w4fp8-keep-io": True, "w4fp8-mse-keep-io": True}
KEEP = {"-keep-out": ("proj_out",), "-keep-io": KEEP_IO}  # suffix -> kept float32
BASE2 = ("none", "w4fp8", "w4-only", "a8-only")  # always in phase 2
GROUPS = ("adaln", "attn", "mlp", "temb", "in", "out")  # phase-1 attribution: w4fp8 on one group of layers only


# --- the MSE scale search (a candidate for pack_int4) -------------------------------------------

def search_clip(weight: torch.Tensor, group_size: int = 0, ratios=RATIOS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row (or group of `group_size` inputs) of [N, K] `weight`: the bf16-rounded scale
    ratio * absmax / 7 (float32 [N, groups, 1]) with the ratio of `ratios` that gives the least
    squared int4 rounding error (round, clamp to -8..7, as pack_int4), and that ratio ([N, groups]).
    Ties keep the larger ratio, so a grid containing 1.0 is never worse than absmax scaling."""
    n, k = weight.shape
    w = weight.float()
    groups = w.view(n, k // group_size, group_size) if group_size else w.view(n, 1, k)
    absmax = groups.abs().amax(-1, keepdim=True)
    best_err = torch.full_like(absmax, math.inf)
    best_scale = torch.ones_like(absmax)
    best_ratio = torch.ones_like(absmax)
    for ratio in sorted(ratios, reverse=True):
        scale = (absmax * ratio / 7.0).clamp_min(1e-12).to(torch.bfloat16).float()
        err = ((groups / scale).round().clamp(-8, 7) * scale - groups).square().sum(-1, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
        best_ratio = torch.where(better, torch.full_like(absmax, ratio), best_ratio)
    return best_scale, best_ratio.squeeze(-1)


def pack_int4_mse(weight: torch.Tensor, group_size: int = 0, ratios=RATIOS) -> tuple[torch.Tensor, torch.Tensor]:
    """pack_int4 with MSE-chosen clip ratios: [N, K] float -> (packed uint8 [N, K//2], bf16 scales [N] or
    [N, K//group]), the same layout and dtypes, so W4Fp8Linear and unpack_int4 take it as is."""
    n, k = weight.shape
    scale, _ = search_clip(weight, group_size, ratios)
    groups = weight.float().view(n, k // group_size, group_size) if group_size else weight.float().view(n, 1, k)
    q = (groups / scale).round().clamp(-8, 7).add(8).to(torch.uint8).view(n, k // TILE_K, 2, TILE_K // 2)
    packed = q[:, :, 0, :] | (q[:, :, 1, :] << 4)
    scale = scale.squeeze(-1).to(torch.bfloat16)
    return packed.reshape(n, k // 2).contiguous(), (scale if group_size else scale.squeeze(-1)).contiguous()


# --- variants -----------------------------------------------------------------------------------

class FakeQuantLinear(nn.Module):
    """What W4Fp8Linear's CPU reference computes, without its per-call padding and unpacking:
    `weight` (already dequantized, or float for a8-only) in float32, activations optionally through
    quantize_tokens (FP8 e4m3, one scale per token) when there are more than SKINNY_MAX_M token rows
    (since 2026-11-30; the committed results predate it and quantized every call's activations)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, fp8_activations: bool):
        super().__init__()
        self.register_buffer("weight", weight.float())
        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)
        self.fp8_activations = fp8_activations

    def forward(self, x):
        if self.fp8_activations and x.numel() // x.shape[-1] > SKINNY_MAX_M:  # as w4fp8.takes_skinny_path
            x8, scale = quantize_tokens(x.reshape(-1, x.shape[-1]))
            x = (x8.float() * scale).view(x.shape).to(x.dtype)
        return F.linear(x, self.weight, self.bias)


def quantized_names(model) -> list[str]:
    from hprune.quant.quantize import QuantConfig, select_linears

    return select_linears(model, QuantConfig(backend="w4fp8", skip=())).quantized  # every candidate layer


def layer_group(name: str) -> str:
    if re.search(r"(^|\.)norm1(_context)?\.linear$|\.norm\.linear$|^norm_out\.linear$", name):
        return "adaln"
    if ".attn." in name:
        return "attn"
    if re.search(r"\.ff(_context)?\.|\.proj_mlp$|^single_transformer_blocks\.\d+\.proj_out$", name):
        return "mlp"
    if name.startswith("time_text_embed."):
        return "temb"
    return "out" if name == "proj_out" else "in"  # context_embedder, x_embedder


def layer_subgroup(name: str) -> str:
    """attn and mlp split by what feeds the layer: attn-in (q, k, v: the modulated norm's output),
    attn-out (the attention's output), mlp-in (the modulated norm's output), mlp-out (GELU's output;
    FLUX's single-block proj_out reads attention and GELU outputs together); else layer_group."""
    group = layer_group(name)
    if group == "attn":
        return "attn-out" if re.search(r"\.to_(add_)?out(\.0)?$", name) else "attn-in"
    if group == "mlp":
        return "mlp-out" if re.search(r"\.net\.2$|^single_transformer_blocks\.\d+\.proj_out$", name) else "mlp-in"
    return group


def _kept(variant: str) -> tuple[str, ...]:
    return next((names for suffix, names in KEEP.items() if variant.endswith(suffix)), ())


def _base(variant: str) -> str:
    return next((variant.removesuffix(suffix) for suffix in KEEP if variant.endswith(suffix)), variant)


def _packer(variant: str):
    """variant -> (pack function of a padded weight or None, FP8 activations?)."""
    variant = _base(variant)
    if variant in ("w4fp8", "w4-only") or variant.startswith("w4fp8@"):
        return (lambda w: pack_int4(w, 0)), variant != "w4-only"
    if GPTQ_VARIANT.match(variant):
        return "gptq", not variant.startswith("w4-only")
    if variant.startswith("w4fp8-g"):
        gs = int(variant[len("w4fp8-g"):])
        return (lambda w: pack_int4(w, gs)), True
    if variant == "w4fp8-mse":
        return (lambda w: pack_int4_mse(w, 0)), True
    if variant == "a8-only" or variant.startswith("a8-only@"):
        return None, True
    raise ValueError(f"unknown variant {variant}")


# --- GPTQ (hprune.quant.gptq) --------------------------------------------------------------------

CALIB_PER_CATEGORY = 8  # train-split prompts per category whose sampling runs give GPTQ its inputs
# w4fp8-gptq (the default's rounding) and its candidates: w4-only-gptq (FP8 activations off: the weight
# error alone), -mse (per-row scales chosen by search_clip before GPTQ), -cNN (every row's scale at
# NN% of absmax / 7), -calN (N train prompts per category instead of CALIB_PER_CATEGORY)
GPTQ_VARIANT = re.compile(r"^(w4fp8|w4-only)-gptq(?P<clip>-mse|-c\d\d)?(?:-cal(?P<cal>\d+))?$")


def gptq_options(variant: str) -> tuple[str | None, int]:
    """GPTQ variant name (without a -keep suffix) -> (clip: None, "mse" or "0.NN", calibration prompts per category)."""
    m = GPTQ_VARIANT.match(variant)
    clip = m["clip"] and (m["clip"][1:] if m["clip"] == "-mse" else f"0.{m['clip'][2:]}")
    return clip, int(m["cal"] or CALIB_PER_CATEGORY)


def calibration_hessians(pipe, model: nn.Module, per_category: int = CALIB_PER_CATEGORY) -> dict:
    """H of every candidate linear of `model` over its own sampling of `per_category` train prompts
    per category (eval_steps steps), cached on the model per calibration size."""
    from hprune.experiments.ablate import AblateConfig
    from hprune.quant.gptq import collect_hessians
    from hprune.toy.splits import eval_set

    cache = model.__dict__.setdefault("_gptq_hessians", {})
    if per_category not in cache:
        items = eval_set("train", per_category)

        def run():
            old, pipe.transformer = pipe.transformer, model
            try:
                for i in range(0, len(items), 64):
                    b = items[i:i + 64]
                    pipe([x.prompt for x in b], num_inference_steps=AblateConfig().eval_steps, seeds=[x.seed for x in b])
            finally:
                pipe.transformer = old
        cache[per_category] = collect_hessians(model, quantized_names(model), run)
    return cache[per_category]


def gptq_weight(model: nn.Module, name: str, variant: str = "w4fp8-gptq") -> torch.Tensor:
    """The GPTQ-rounded int4 weight of layer `name` (float32 [N, K]) with `variant`'s per-row scales
    and calibration (gptq_options); calibration_hessians must have run for it."""
    from hprune.quant.gptq import gptq_codes
    from hprune.quant.w4fp8 import row_scales

    clip, per_category = gptq_options(variant)
    w = model.get_submodule(name).weight.data.float()
    if clip == "mse":
        scale = search_clip(w)[0].view(-1)
    else:
        scale = row_scales(w * float(clip)) if clip else row_scales(w)
    return gptq_codes(w, model._gptq_hessians[per_category][name], scale).float() * scale[:, None]


def build_variant(model: nn.Module, variant: str, real: bool = False) -> nn.Module:
    """A deep copy of `model` with `variant`; `real` runs the int4 weights through W4Fp8Linear
    (the backend's module: groups and MSE scales loaded into its buffers) instead of FakeQuantLinear.
    "w4fp8@GROUP": w4fp8 on the layers of one GROUP only."""
    if variant == "none":
        return model
    keep = _kept(variant)
    if real and _base(variant) == "w4fp8":
        from hprune.quant.quantize import QuantConfig, quantize_

        out = copy.deepcopy(model)
        quantize_(out, QuantConfig(backend="w4fp8", skip=keep))  # keep=(): every linear; -keep-io: the default
        return out
    pack, fp8 = _packer(variant)
    only = variant.split("@")[1] if "@" in variant else None
    out = copy.deepcopy(model)
    with torch.no_grad():
        for name in quantized_names(model):
            if (only and only not in (layer_group(name), layer_subgroup(name))) or name in keep:
                continue
            lin = out.get_submodule(name)
            k = lin.in_features
            if pack == "gptq":
                replace_module(out, name, FakeQuantLinear(gptq_weight(model, name, _base(variant)), lin.bias, fp8))
                continue
            if pack is None:
                replace_module(out, name, FakeQuantLinear(lin.weight.data, lin.bias, fp8))
                continue
            packed, scale = pack(_pad_inputs(lin.weight.data.float(), padded_k(k)))
            if real:
                group_size = padded_k(k) // scale.shape[1] if scale.dim() == 2 else 0
                mod = W4Fp8Linear(k, lin.out_features, lin.bias is not None, group_size, dtype=lin.weight.dtype)
                mod.qweight, mod.w_scale = packed, scale
                if lin.bias is not None:
                    mod.bias.data.copy_(lin.bias.data)
                replace_module(out, name, mod)
            else:
                replace_module(out, name, FakeQuantLinear(unpack_int4(packed, scale)[:, :k], lin.bias, fp8))
    return out.eval()


def weight_error(model: nn.Module, variant: str) -> float | None:
    """||W_q - W|| / ||W|| over every quantized linear (None: no weight quantization)."""
    pack, _ = _packer(variant)
    if pack is None or pack == "gptq" or variant.startswith("w4fp8@"):
        return None
    num = den = 0.0
    for name in quantized_names(model):
        w = model.get_submodule(name).weight.data.float()
        k = w.shape[1]
        if name not in _kept(variant):
            num += (unpack_int4(*pack(_pad_inputs(w, padded_k(k))))[:, :k] - w).square().sum().item()
        den += w.square().sum().item()
    return math.sqrt(num / den)


# --- models -------------------------------------------------------------------------------------

def student_specs(folder: Path) -> list[tuple[str, str, Path]]:
    """(teacher, row, file) of every student file, e.g. shapes-sd3-hpp_pwp-0.2.safetensors."""
    specs = []
    for path in sorted(folder.glob("*.safetensors")):
        teacher = next((t for t in TEACHERS if path.stem.startswith(t + "-")), None)
        if teacher is None:
            raise SystemExit(f"{path}: not a shapes-sd3-* / shapes-flux-* student file")
        specs.append((teacher, path.stem[len(teacher) + 1:].replace("_", "+"), path))
    return specs


def load_student(pipe, teacher: str, row: str, path: Path) -> nn.Module:
    from safetensors.torch import load_file

    from hprune.experiments.ablate import _norm_means
    from hprune.planning.plan import Plan
    from hprune.planning.scoring import load_run
    from hprune.prune.surgery import prune_

    run = load_run(f"results/analysis/{teacher}-mean")
    student = prune_(copy.deepcopy(pipe.transformer), Plan.load(f"results/tables/{teacher}/{row}/plan.json"),
                     _norm_means(run))
    student.load_state_dict({k: v.float() for k, v in load_file(path).items()}, strict=True)
    return student.eval()


# --- phase 1 ------------------------------------------------------------------------------------

def capture_calls(pipe, steps: int):
    """The transformer's inputs over one sampling run of PHASE1_PROMPTS val prompts, and dt per step."""
    from hprune.toy.splits import eval_set

    items = eval_set("val", 1)[::2][:PHASE1_PROMPTS]
    calls = []

    def hook(module, args, kwargs):
        calls.append((args, {k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()}))

    handle = pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        pipe([i.prompt for i in items], num_inference_steps=steps, seeds=[i.seed for i in items])
    finally:
        handle.remove()
    sigmas = pipe.scheduler.sigmas.float().cpu()
    return calls, (sigmas[:-1] - sigmas[1:]).tolist(), float(pipe.config.guidance_scale), len(items)


@torch.no_grad()
def guided_updates(model, calls, dts, guidance: float, batch: int) -> list[torch.Tensor]:
    """dt_i * (guided velocity) of each step: what the Euler sampler adds to the image."""
    out = []
    for (args, kwargs), dt in zip(calls, dts):
        v = model(*args, **kwargs)[0].float()
        if v.shape[0] == 2 * batch:  # cond, uncond (ShapesPipeline._guided_velocity)
            cond, uncond = v.chunk(2)
            v = uncond + guidance * (cond - uncond)
        out.append(dt * v)
    return out


def update_error(ref: list[torch.Tensor], got: list[torch.Tensor]) -> float:
    num = sum((g - r).square().sum().item() for r, g in zip(ref, got))
    return math.sqrt(num / sum(r.square().sum().item() for r in ref))


PHASE1 = [("w4fp8", False), ("w4fp8", True), ("w4fp8-g64", False), ("w4fp8-g32", False), ("w4-only", False),
          ("a8-only", False), ("w4fp8-mse", False), ("w4fp8-mse", True), ("w4fp8-keep-out", False),
          ("w4fp8-mse-keep-out", False), ("w4fp8-keep-io", False), ("w4fp8-mse-keep-io", False)] + \
    [(f"w4fp8@{g}", False) for g in GROUPS]


def phase1_key(variant: str, real: bool) -> str:
    return f"{variant} [real]" if real else variant


def run_phase1(model, calls, dts, guidance, batch, result: dict | None = None) -> dict:
    """Fills in `result` (a previous run's, resumed) with the PHASE1 variants it lacks."""
    t0 = time.time()
    ref = guided_updates(model, calls, dts, guidance, batch)
    result = dict(result or {})
    for variant, real in PHASE1:
        if phase1_key(variant, real) in result:
            continue
        t = time.time()
        err = update_error(ref, guided_updates(build_variant(model, variant, real), calls, dts, guidance, batch))
        result[phase1_key(variant, real)] = {"update_error": err, "seconds": round(time.time() - t, 1)}
        if not real:
            result[phase1_key(variant, real)]["weight_error"] = weight_error(model, variant)
    ratios = torch.cat([search_clip(_pad_inputs(w, padded_k(w.shape[1])))[1].flatten() for w in
                        (model.get_submodule(n).weight.data.float() for n in quantized_names(model))])
    result["mse_clip_ratio"] = {"mean": ratios.mean().item(), "share_below_1": (ratios < 1).float().mean().item(),
                                "quartiles": torch.quantile(ratios, torch.tensor([0.25, 0.5, 0.75])).tolist()}
    result["seconds"] = round(result.get("seconds", 0) + time.time() - t0, 1)
    return result


def choose_fixes(phase1: dict, students: list[str]) -> tuple[list[str], str]:
    """The per-row fix (fast cuBLAS path) and the group fix (slower kernel) with the lowest mean
    phase-1 update error over the students, the better one first."""
    mean = {f: float(np.mean([phase1[m][f]["update_error"] for m in students])) for f in FIXES}
    ranked = sorted(mean, key=mean.get)
    chosen = [next(f for f in ranked if FIXES[f]), next(f for f in ranked if not FIXES[f])]
    chosen.sort(key=mean.get)
    reason = ("mean phase-1 update error over the students: " + ", ".join(f"{f} {mean[f]:.4f}" for f in ranked)
              + f"; chosen: {', '.join(chosen)} (the best fix keeping one scale per row, and the best group fix)")
    return chosen, reason


# --- phase 2 ------------------------------------------------------------------------------------

def score(pipe, model, cfg) -> dict:
    """score_transformer's scores, plus ShapesEval's quality parts: per image the mean of its own parts
    (purity, sharpness, texture: "parts"), and the set's means with its set-level frechet term, which
    is in every image's quality at once (one draw per set: no per-image error bar covers it)."""
    import hprune.toy.shapes_eval as shapes_eval
    from hprune.experiments.ablate import score_transformer
    from hprune.toy.shapes_eval.quality import PARTS

    reports, evaluate = [], shapes_eval.evaluate

    def keep_report(*a, **k):
        reports.append(evaluate(*a, **k))
        return reports[-1]

    t = time.time()
    shapes_eval.evaluate = keep_report  # score_transformer imports it when called
    try:
        s = score_transformer(pipe, model, cfg)
    finally:
        shapes_eval.evaluate = evaluate
    per, report = s["per_image"], reports[-1]
    return {"semantic": s["semantic"], "quality": s["quality"], "seconds": round(time.time() - t, 1),
            "quality_parts": report.quality_parts,
            "per_image": {"semantic": [round(float(x), 6) for x in per.semantic],
                          "quality": [round(float(x), 6) for x in per.quality],
                          "parts": [round(float(np.mean([r[p] for p in PARTS])), 6) for r in report.per_prompt]}}


def added(teacher: dict, base: dict, row: dict) -> dict:
    """degradation(row) - degradation(base) ("added"), and the part of it from each score (the
    relative drop of that score against the teacher's: added is their mean), each with its paired
    standard error over images ("_se"). Exact for the means: semantic is a per-category mean over
    equal counts, quality a plain mean (its set-level Frechet term is in every image's value)."""
    keys = [k for k in ("semantic", "quality") if teacher[k] > 0]
    drops = {k: (np.asarray(base["per_image"][k]) - np.asarray(row["per_image"][k])) / teacher[k] for k in keys}
    out = {}
    for name, d in [("added", sum(drops.values()) / len(keys))] + [(f"added_{k}", d) for k, d in drops.items()]:
        out[name], out[f"{name}_se"] = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
    if "parts" in base["per_image"] and "parts" in row["per_image"] and teacher["quality"] > 0:
        # quality = (3 * parts + frechet) / 4 per image: the two shares of added_quality
        d = 0.75 * (np.asarray(base["per_image"]["parts"]) - np.asarray(row["per_image"]["parts"])) / teacher["quality"]
        out["added_quality_parts"], out["added_quality_parts_se"] = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
        out["added_quality_frechet"] = out["added_quality"] - out["added_quality_parts"]  # one draw: no SE
    return out


# --- report -------------------------------------------------------------------------------------

def markdown(result: dict) -> str:
    lines = []
    p1 = result.get("phase1", {})
    if p1:
        cols = [phase1_key(v, r) for v, r in PHASE1]
        lines += ["### Phase 1: relative error of the Euler updates vs none (%)", "",
                  "| model | " + " | ".join(cols) + " | mse ratio<1 |", "|---" * (len(cols) + 2) + "|"]
        for m, r in p1.items():
            lines.append(f"| {m} | " + " | ".join(f"{100 * r[c]['update_error']:.2f}" for c in cols)
                         + f" | {100 * r['mse_clip_ratio']['share_below_1']:.0f}% |")
        wcols = [c for c in cols if p1[next(iter(p1))][c].get("weight_error") is not None]
        lines += ["", "Relative weight error (%): " + "; ".join(
            f"{m}: " + ", ".join(f"{c} {100 * r[c]['weight_error']:.2f}" for c in wcols) for m, r in p1.items()), ""]
    p2 = result.get("phase2", {})
    if p2:
        variants = [v for v in result["phase2_variants"]]
        lines += ["### Phase 2: val degradation (%) and added points over none (± paired SE)",
                  f"split val, {result['settings']['per_category']} images per category "
                  f"({8 * result['settings']['per_category']} images)", "",
                  "| model | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
        for m, r in p2.items():
            cells = []
            for v in variants:
                if v not in r:
                    cells.append("")
                elif v == "none":
                    cells.append(f"{100 * r[v]['degradation']:.2f}")
                else:
                    cells.append(f"{100 * r[v]['degradation']:.2f} ({100 * r[v]['added']:+.2f} ± {100 * r[v]['added_se']:.2f})")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += ["", "| model | variant | semantic | quality | degradation % | added pts ± SE | from semantic ± SE "
                  "| from quality ± SE | quality: per-image parts ± SE / set frechet | s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        parts = {}
        for m, r in p2.items():
            teacher = result["teachers"][m.split("/")[0]]
            for v in variants:
                if v not in r:
                    continue
                x = r[v]
                a = added(teacher, r["none"], x) if "none" in r else {}
                if v != "none":
                    parts.setdefault(v, []).append(a)
                cell = lambda key: f"{100 * a[key]:+.2f} ± {100 * a[key + '_se']:.2f}" if key in a else ""
                split = (f"{cell('added_quality_parts')} / {100 * a['added_quality_frechet']:+.2f}"
                         if "added_quality_parts" in a else "")
                lines.append(f"| {m} | {v} | {x['semantic']:.4f} | {x['quality']:.4f} | {100 * x['degradation']:.2f} | "
                             f"{cell('added')} | {cell('added_semantic')} | {cell('added_quality')} | {split} | "
                             f"{x['seconds']:.0f} |")
        lines += ["", "Mean over the phase-2 models (added pts; its part from semantic; from quality; "
                  "SE of the mean = sqrt(sum SE^2) / n, models independent):", ""]
        for v, xs in parts.items():
            def mean(key):
                vals = [x[key] for x in xs if key in x]
                if not vals:
                    return "n/a"
                se = math.sqrt(sum(x[key + "_se"] ** 2 for x in xs if key in x)) / len(vals)
                return f"{100 * np.mean(vals):+.2f} ± {100 * se:.2f}"
            lines.append(f"- {v} (n={len(xs)}): added {mean('added')}; semantic {mean('added_semantic')}; "
                         f"quality {mean('added_quality')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--students", default="/tmp/dev/students", type=Path)
    ap.add_argument("--out", default="results/quant_quality_shapes.json", type=Path)
    ap.add_argument("--per-category", type=int, default=16, help="phase-2 val images per category (8 categories)")
    ap.add_argument("--phase", choices=("1", "2", "both"), default="both")
    ap.add_argument("--phase2-teachers", action="store_true", help="also score the teachers' variants in phase 2")
    ap.add_argument("--phase2-variants", default=None,
                    help="comma-separated phase-2 variants instead of BASE2 + the fixes phase 1 chooses")
    ap.add_argument("--exact", action="store_true", help="phase 2 through W4Fp8Linear (about 1.5x slower) "
                                                          "instead of FakeQuantLinear")
    ap.add_argument("--models", default=None, help="comma-separated subset, e.g. shapes-sd3/hpp+pwp-0.2,shapes-sd3")
    ap.add_argument("--phase1-variants", default=None,
                    help="comma-separated phase-1 variants (FakeQuantLinear) instead of PHASE1, e.g. "
                         "w4fp8-gptq-keep-io,w4fp8-gptq-mse-keep-io")
    args = ap.parse_args(argv)
    if args.phase1_variants:
        global PHASE1
        PHASE1 = [(v, False) for v in args.phase1_variants.split(",")]

    from hprune.core.files import write_json
    from hprune.experiments.ablate import AblateConfig, degradation
    from hprune.toy.pipeline import load_pipeline

    cfg = AblateConfig(split="val", per_category=args.per_category)
    settings = {"split": cfg.split, "per_category": cfg.per_category, "eval_steps": cfg.eval_steps,
                "eval_batch": cfg.eval_batch, "phase1_prompts": PHASE1_PROMPTS, "ratios": list(RATIOS),
                "exact": args.exact, "threads": torch.get_num_threads()}
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if result.get("settings") != settings:
        result = {"settings": settings}
    result.setdefault("phase1", {})
    result.setdefault("teachers", {})
    result.setdefault("phase2", {})
    t_start = time.time()

    def save():
        result["wall_seconds_this_run"] = round(time.time() - t_start, 1)
        write_json(args.out, result)

    specs = student_specs(args.students)
    models = [(f"{t}/{r}", t, r, p) for t, r, p in specs] + [(t, t, None, None) for t in TEACHERS]
    if args.models:
        keep = args.models.split(",")
        models = [m for m in models if m[0] in keep]
    students = [m[0] for m in models if m[2] is not None]
    pipes = {}

    def pipe_of(teacher):
        if teacher not in pipes:
            pipes[teacher] = load_pipeline(teacher, device="cpu")
        return pipes[teacher]

    def model_of(name, teacher, row, path):
        pipe = pipe_of(teacher)
        return pipe.transformer if row is None else load_student(pipe, teacher, row, path)

    captured = {}

    def phase1(which):
        for name, teacher, row, path in which:
            if all(phase1_key(v, r) in result["phase1"].get(name, {}) for v, r in PHASE1):
                continue
            if teacher not in captured:
                captured[teacher] = capture_calls(pipe_of(teacher), cfg.eval_steps)
            model = model_of(name, teacher, row, path)
            for variant in {_base(v) for v, _ in PHASE1 if GPTQ_VARIANT.match(_base(v))}:
                calibration_hessians(pipe_of(teacher), model, gptq_options(variant)[1])
            result["phase1"][name] = run_phase1(model, *captured[teacher], result["phase1"].get(name))
            print(f"phase 1 {name}: " + ", ".join(f"{k} {v['update_error']:.4f}" for k, v in result["phase1"][name].items()
                                                   if isinstance(v, dict) and "update_error" in v), flush=True)
            save()

    if args.phase in ("1", "both"):  # the students first: phase 2's choice reads them; the teachers after phase 2
        phase1([m for m in models if m[2] is not None])

    if args.phase in ("2", "both"):
        if args.phase2_variants:
            variants, reason = args.phase2_variants.split(","), "given by --phase2-variants"
        else:
            fixes, reason = choose_fixes(result["phase1"], [s for s in students if s in result["phase1"]])
            variants = list(BASE2) + fixes
        result["phase2_variants"], result["phase2_choice"] = variants, reason
        print(f"phase 2 variants: {variants} ({reason})", flush=True)
        for name, teacher, row, path in models:
            if row is None and not args.phase2_teachers:
                continue
            if teacher not in result["teachers"]:
                ref = score(pipe_of(teacher), pipe_of(teacher).transformer, cfg)
                result["teachers"][teacher] = ref
                print(f"teacher {teacher} val: semantic {ref['semantic']:.4f} quality {ref['quality']:.4f} "
                      f"({ref['seconds']:.0f} s)", flush=True)
                save()
            ref = result["teachers"][teacher]
            done = result["phase2"].setdefault(name, {})
            if row is None and "none" not in done:
                done["none"] = {**ref, "degradation": 0.0}
            model = None
            for variant in variants:
                if variant in done:
                    continue
                model = model if model is not None else model_of(name, teacher, row, path)
                if GPTQ_VARIANT.match(_base(variant)):
                    calibration_hessians(pipe_of(teacher), model, gptq_options(_base(variant))[1])
                s = score(pipe_of(teacher), build_variant(model, variant, args.exact), cfg)
                s["degradation"] = degradation(ref, s)
                if variant != "none":
                    s.update(added(ref, done["none"], s))
                done[variant] = s
                print(f"phase 2 {name} {variant}: degradation {100 * s['degradation']:.2f}% "
                      f"added {100 * s.get('added', 0):+.2f} ± {100 * s.get('added_se', 0):.2f} ({s['seconds']:.0f} s)",
                      flush=True)
                save()
    if args.phase in ("1", "both"):
        phase1([m for m in models if m[2] is None])
    save()
    print(markdown(result))
    print(f"\nwall time this run: {time.time() - t_start:.0f} s; saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
