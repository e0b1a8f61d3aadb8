"""The six sections of a run report, each built from the files of the run folder that
`hprune.folders.run_layout` declares. A section whose file is not there yet (the run stopped
before that stage, or has no quantization) says so in one sentence."""

from __future__ import annotations

import csv
import math
import shlex
from pathlib import Path

from hprune.planning.plan import Plan
from hprune.report.run_figures import contribution_png, loss_png, thumbnail_png
from hprune.report.run_blocks import Code, Image, Section, Table, Text, read_json
from hprune.folders.run_layout import STAGES, VARIANT_STAGE, VARIANTS, RunLayout
from hprune.planning.scoring import RunData, load_run

MAX_PROMPTS = 8  # rows of the sample grid
LOSS_CSV = "loss.csv"  # hprune.distill.loop.LOSS_CSV, named here so the report does not import torch


def build_sections(layout: RunLayout, info: dict) -> list[Section]:
    return [model_plan(layout, info), quality(layout), memory(layout), samples(layout),
            distillation(layout), recipe(layout, info)]


# ----------------------------------------------------------------- model and plan


def model_plan(layout: RunLayout, info: dict) -> Section:
    section = Section("model-plan", "Model and plan", [Text(
        f"Model {info.get('model', '?')} (family {info.get('family', '?')}), target ratio {_percent(info.get('ratio'))}, "
        f"recipe {info.get('recipe', '?')}, quantization {info.get('quant') or 'none'}.")])
    analysis = load_run(layout.analysis) if (layout.analysis / "units.json").is_file() else None
    if layout.plan.is_file():
        section.blocks += _plan_blocks(Plan.load(layout.plan), analysis, read_json(layout.scores))
    else:
        section.blocks.append(Text("No plan yet: the run stopped before the plan stage."))
    section.blocks += _heatmap_blocks(analysis) + _stage_blocks(layout)
    return section


def _plan_blocks(plan: Plan, analysis: RunData | None, scores: dict | None) -> list:
    params = analysis.units.params if analysis else {}
    blocks = sum(u.is_block for u in plan.units)
    text = (f"Plan by {plan.method}: target ratio {_percent(plan.ratio_target)}, "
            f"reached {_percent(plan.ratio_reached, 1)}; "
            f"{len(plan.units)} units removed (whole blocks: {blocks}, subcomponents of kept blocks: "
            f"{len(plan.units) - blocks}), norm mode {plan.norm_mode}.")
    removed, total = _params_removed(plan, analysis, scores)
    counted = (f"{removed:,} of {total:,} parameters removed ({removed / total:.1%})." if removed is not None and total
               else "Parameters removed: unknown (neither analysis/units.json nor scores.json is there yet).")
    rows = [[u.key, "whole block" if u.is_block else "subcomponent", _count(params.get(u.key))] for u in plan.units]
    return [Text(text), Text(counted), Table(["unit removed", "kind", "parameters"], rows)]


def _params_removed(plan: Plan, analysis: RunData | None, scores: dict | None) -> tuple[int | None, int | None]:
    """From the analysis' unit table when there; else teacher minus pruned in scores.json."""
    if analysis is not None:
        return sum(analysis.units.params.get(u.key, 0) for u in plan.units), analysis.units.total_params
    params = {v["name"]: v.get("params") for v in (scores or {}).get("variants", [])}
    if params.get("teacher") and params.get("pruned"):
        return params["teacher"] - params["pruned"], params["teacher"]
    return None, None


def _heatmap_blocks(analysis: RunData | None) -> list:
    if analysis is None:
        return [Text("No contribution analysis yet: the run stopped before the analysis stage.")]
    if not analysis.rows:
        return [Text("The contribution analysis has no rows yet: the run stopped during the analysis stage.")]
    return [Text("Contribution of each unit (the paper's Figure 4 layout): one row per subcomponent type and the "
                 "whole block, one column per block in forward order; red means removing it hurts."),
            Image("contribution.png", contribution_png(analysis), "contribution heatmap")]


def _stage_blocks(layout: RunLayout) -> list:
    markers = [(stage, read_json(layout.stage_marker(stage))) for stage in STAGES]
    rows = [[stage, f"{m.get('seconds', 0):.1f}", m.get("summary", "")] for stage, m in markers if m is not None]
    return [Table(["stage finished", "seconds", "summary"], rows)] if rows else [Text("No stage has finished yet.")]


# ----------------------------------------------------------------- quality


def quality(layout: RunLayout) -> Section:
    section = Section("quality", "Quality: teacher vs each variant")
    scores = read_json(layout.scores)
    if scores is None:
        section.blocks.append(Text("No quality scores yet: the run stopped before the evaluate stage "
                                   "(scores.json is missing)."))
        return section
    variants = scores.get("variants", [])
    names = _score_names(variants)
    rows = [[v["name"], v.get("stage", ""), _count(v.get("params")), *(_mean_se(v, n) for n in names),
             _percent(v.get("degradation"), 1)] for v in variants]
    section.blocks += [
        Text(f"Metric {scores.get('metric', '?')} on the {scores.get('split', '?')} split, {scores.get('n', '?')} prompts; "
             f"± is one standard error over the prompts; degradation is the mean relative drop of "
             f"{' and '.join(names)} against the teacher (lower is better)."),
        Table(["variant", "stage", "parameters", *names, "degradation"], rows),
        *_category_blocks(variants)]
    return section


def _score_names(variants: list[dict]) -> list[str]:
    """semantic and quality on the shapes testbed; a real metric's own components otherwise."""
    if not variants or "semantic" in variants[0]:
        return ["semantic", "quality"]
    components = list(variants[0].get("components", {}))
    return [c for c in components if c != "score"] or components


def _category_blocks(variants: list[dict]) -> list:
    categories = list(dict.fromkeys(c for v in variants for c in v.get("per_category", {})))
    if not categories:
        return []
    rows = []
    for category in categories:
        cells = [v.get("per_category", {}).get(category) for v in variants]
        n = next((c.get("n") for c in cells if c), "?")
        rows.append([f"{category} (n={n})", *(f"{c['semantic']:.3f} / {c['quality']:.3f}" if c else "—" for c in cells)])
    return [Text("Per category, semantic / quality:"), Table(["category", *(v["name"] for v in variants)], rows)]


# ----------------------------------------------------------------- memory and latency


def memory(layout: RunLayout) -> Section:
    section = Section("memory", "Memory and latency")
    mem = read_json(layout.memory)
    if mem is None:
        section.blocks.append(Text("No memory measurements yet: the run stopped before they were taken "
                                   "(memory.json is missing)."))
        return section
    teacher, compressed, bench = mem["teacher"], mem["compressed"], mem.get("bench")
    header = ["model", "parameters", "weight bytes"] + (["ms per step", "peak memory"] if bench else [])
    rows = [[name, _count(m["params"]), _bytes(m["weight_bytes"]),
             *([f"{bench[f'{name}_ms_per_step']:.2f}", f"{bench[f'{name}_peak_gib']:.2f} GiB"] if bench else [])]
            for name, m in (("teacher", teacher), ("compressed", compressed))]
    section.blocks += [
        Text(f"The compressed model keeps {_share(compressed['weight_bytes'], teacher['weight_bytes'])} of the "
             f"teacher's weight bytes and {_share(compressed['params'], teacher['params'])} of its parameters."),
        Table(header, rows),
        Text(f"Latency and peak memory by `hprune bench` on {bench['device']}: "
             f"{bench['teacher_ms_per_step'] / bench['compressed_ms_per_step']:.2f}x faster per step.")
        if bench else Text("No GPU: weight bytes only.")]
    return section


# ----------------------------------------------------------------- samples


def samples(layout: RunLayout) -> Section:
    from hprune.generate.images import read_records

    section = Section("samples", "Samples: same prompts and seeds")
    records = {v: read_records(layout.samples(v)) for v in VARIANTS}
    records = {v: r for v, r in records.items() if r}
    if not records:
        done = layout.stage_marker("generate").is_file()
        section.blocks.append(Text("The samples are not in this folder: the generate stage ran, but its images "
                                   "(samples/) were removed or not copied." if done else
                                   "No samples yet: the run stopped before the generate stage."))
        return section
    first = next(iter(records.values()))
    indices = _spread(sorted(first), MAX_PROMPTS)
    rows = [[f"{first[i]['prompt']} (seed {first[i]['seed']})",
             *(_sample_cell(layout, v, records[v].get(i)) for v in records)] for i in indices]
    section.blocks += [Text(_seed_sentence(records, indices, len(first))), Table(["prompt (seed)", *records], rows)]
    missing = [v for v in VARIANTS if v not in records]
    skipped = {v: why for v in missing if (why := _skipped_by_recipe(layout, v))}
    section.blocks += [Text(f"No samples of {v}: {why}.") for v, why in skipped.items()]
    missing = [v for v in missing if v not in skipped]
    if missing:
        section.blocks.append(Text(f"No samples of {', '.join(missing)}: that stage did not run (or has not yet)."))
    return section


def _skipped_by_recipe(layout: RunLayout, variant: str) -> str | None:
    """Why a finished stage made no model of its own to draw with (its marker's summary says), or None."""
    stage = VARIANT_STAGE[variant]
    summary = (read_json(layout.stage_marker(stage)) or {}).get("summary", "")
    if stage == "quantize" and summary.startswith("no quantization"):
        return "the recipe quantizes nothing (quantize.backend = none); the compressed model is the unquantized one"
    if stage == "distill" and summary.startswith("skipped"):
        return "the recipe trains nothing (data.source = none); the compressed model is the pruned one"
    return None


def _spread(indices: list[int], k: int) -> list[int]:
    """k indices evenly spaced over the list: evaluation sets are ordered by category, so the
    first k would all show one category."""
    if len(indices) <= k:
        return indices
    return [indices[(i * len(indices)) // k] for i in range(k)]


def _seed_sentence(records: dict[str, dict], indices: list[int], total: int) -> str:
    """Checked, not assumed: a column drawn from other seeds would not compare like with like."""
    differ = [i for i in indices if len({r[i]["seed"] for r in records.values() if i in r}) > 1]
    shown = f"{len(indices)} of {total} prompts, evenly spaced" if len(indices) < total else f"All {total} prompts"
    if differ:
        return (f"{shown}; the columns' seeds differ at prompts {', '.join(map(str, differ))}, "
                "so those rows do not compare like with like.")
    return f"{shown}; each row is drawn from the same seed in every column."


def _sample_cell(layout: RunLayout, variant: str, record: dict | None):
    if record is None:
        return "—"
    png = thumbnail_png((layout.samples(variant) / record["path"]).read_bytes())
    return Image(f"sample_{variant}_{record['index']:05d}.png", png, f"{variant}: {record['prompt']}")


# ----------------------------------------------------------------- distillation


def distillation(layout: RunLayout) -> Section:
    section = Section("distillation", "Distillation losses")
    columns = read_loss(layout.distill / LOSS_CSV)
    if not columns.get("step"):
        section.blocks.append(Text("No distillation losses yet: the run stopped before the distill stage "
                                   "(distill/loss.csv is missing or empty)."))
        return section
    last = ", ".join(f"{name} {values[-1]:.4g}" for name, values in columns.items() if name != "step")
    section.blocks += [Image("loss.png", loss_png(columns), "distillation loss curves"),
                       Text(f"{len(columns['step'])} steps logged; at step {columns['step'][-1]:.0f}: {last}.")]
    return section


def read_loss(path: Path) -> dict[str, list[float]]:
    """loss.csv (header step,loss,kd,feat) as column -> values; a row cut short by a kill is skipped."""
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = {name: [] for name in reader.fieldnames or []}
        for row in reader:
            try:
                values = {name: float(row[name]) for name in columns}
            except (TypeError, ValueError):
                continue
            for name, value in values.items():
                columns[name].append(value)
    return columns


# ----------------------------------------------------------------- recipe and versions


def recipe(layout: RunLayout, info: dict) -> Section:
    section = Section("recipe", "Recipe and versions")
    if layout.recipe.is_file():
        section.blocks += [Text("The effective recipe (recipe.toml):"), Code(layout.recipe.read_text())]
    else:
        section.blocks.append(Text("No recipe.toml: the run stopped before writing its recipe."))
    command = info.get("command")
    rows = [[key, info[key]] for key in ("model", "family", "ratio", "quant", "recipe", "started") if key in info]
    rows += [["command", shlex.join(command) if isinstance(command, list) else command]] if command else []
    versions = info.get("versions") or {}
    section.blocks += [Text("The run (run.json):"), Table(["field", "value"], rows)]
    section.blocks.append(Table(["package", "version"], sorted(map(list, versions.items()))) if versions
                          else Text("run.json lists no versions."))
    return section


# ----------------------------------------------------------------- formats


def _percent(value, digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}%}"


def _count(value) -> str:
    return "—" if value is None else f"{value:,}"


def _mean_se(variant: dict, name: str) -> str:
    if name not in variant:  # a real metric's component
        value = variant.get("components", {}).get(name, {})
        mean, se = value.get("mean"), value.get("se")
    else:
        mean, se = variant[name], variant.get(f"{name}_se")
    if mean is None:
        return "—"
    return f"{mean:.3f}" + (f" ± {se:.3f}" if se is not None and math.isfinite(se) else "")


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "—"


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"
