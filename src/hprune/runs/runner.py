"""Drive the stages of one run: check everything first, then run what is not done.

A stage is done when its marker (stages/<stage>.json) exists and its output is
there; a run killed at any point re-runs the stage it was in, and the tools
behind the stages resume (the analysis by variant, distillation from its last
checkpoint, generation by variant), so the final numbers equal an uninterrupted
run's. run.json and recipe.toml pin what the folder holds: resuming with
another model, ratio or recipe is refused, naming the difference.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from hprune.errors import HpruneError
from hprune.files import write_atomic, write_json
from hprune.runs.context import RunContext
from hprune.runs.layout import STAGES, RunLayout
from hprune.runs.recipe import to_toml

# What each finished stage must have left; a marker without it means the folder was changed.
OUTPUTS = {
    "analysis": lambda l: l.analysis / "contribution.jsonl",
    "plan": lambda l: l.plan,
    "prune": lambda l: l.pruned,
    "distill": lambda l: l.distill,
    "quantize": lambda l: l.model,
    "generate": lambda l: l.samples("teacher"),
    "evaluate": lambda l: l.scores,
    "report": lambda l: l.report_html,
}


def is_done(layout: RunLayout, stage: str) -> bool:
    return layout.stage_marker(stage).is_file() and OUTPUTS[stage](layout).exists()


def start(ctx: RunContext) -> None:
    """Pin a new run folder's model, ratio and recipe, or check a resumed one matches them."""
    layout = ctx.layout
    info = {"model": ctx.model, "ratio": ctx.ratio, "quant": ctx.recipe.quantize.backend, "recipe": ctx.recipe.name}
    if layout.info.is_file():
        if any(layout.stage_marker(stage).is_file() for stage in STAGES):
            _check_same(layout, info, to_toml(ctx.recipe))
            return
        # Nothing finished yet: a corrected command starts over in place (each stage's own
        # settings check still refuses to mix its partial output with other settings).
    elif layout.root.exists() and any(layout.root.iterdir()):
        raise HpruneError(f"{layout.root} is not empty and holds no run (no run.json); pass a new or empty --out folder.")
    layout.root.mkdir(parents=True, exist_ok=True)
    write_atomic(layout.recipe, to_toml(ctx.recipe))
    write_json(layout.info, {**info, "family": _family(ctx), "command": shlex.join(sys.argv),
                             "versions": _versions(), "started": _now()}, indent=2)


def _check_same(layout: RunLayout, info: dict, recipe_text: str) -> None:
    saved = json.loads(layout.info.read_text())
    differ = [f"{k} {saved.get(k)!r} -> {v!r}" for k, v in info.items() if k != "recipe" and saved.get(k) != v]
    old = layout.recipe.read_text() if layout.recipe.is_file() else ""
    differ += [f"{a.strip()} -> {b.strip()}" for a, b in _changed_lines(old, recipe_text)]
    if differ:
        raise HpruneError(f"{layout.root} holds a run with other settings ({'; '.join(differ)}); resume it with the "
                          "same command, or pass a new --out folder.")


def _changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    """(old, new) 'table.key = value' lines of the settings that differ between two recipes."""
    pairs, old_lines = [], _keyed(old)
    for key, line in _keyed(new).items():
        if old_lines.get(key) != line:
            pairs.append((f"{key[0]}.{old_lines.get(key, 'absent')}", f"{key[0]}.{line}"))
    return pairs


def _keyed(text: str) -> dict[tuple[str, str], str]:
    """(section, key) -> 'key = value' line of a recipe written by to_toml."""
    out, section = {}, ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and section:
            key = line.lstrip("# ").split("=")[0].strip()
            out[(section, key)] = line.lstrip("# ")
    return out


def run_stages(ctx: RunContext, stages=STAGES, echo=print) -> None:
    """Run every stage not done yet, in order; one summary line per stage."""
    for number, stage in enumerate(stages, 1):
        prefix = f"[{number}/{len(stages)}] {stage}"
        if is_done(ctx.layout, stage):
            echo(f"{prefix}: done earlier: {_marker(ctx.layout, stage)['summary']}")
            continue
        from hprune.runs.stages import STAGE_FUNCTIONS

        began = time.perf_counter()
        summary = STAGE_FUNCTIONS[stage](ctx)
        seconds = round(time.perf_counter() - began, 2)
        ctx.layout.stage_marker(stage).parent.mkdir(exist_ok=True)
        write_json(ctx.layout.stage_marker(stage), {"stage": stage, "summary": summary, "seconds": seconds,
                                                    "finished": _now()}, indent=2)
        echo(f"{prefix}: {summary} ({seconds:.0f} s)")


def _marker(layout: RunLayout, stage: str) -> dict:
    return json.loads(layout.stage_marker(stage).read_text())


def status(root: str | Path) -> str:
    """The state of each stage of a run folder, one line each."""
    layout = RunLayout(root)
    if not layout.info.is_file():
        raise HpruneError(f"{root} is not an `hprune run` folder (no run.json); pass the --out folder of a run.")
    info = json.loads(layout.info.read_text())
    lines = [f"run of {info['model']} at ratio {info['ratio']:g} (recipe {info['recipe']}, quant {info['quant']})"]
    for stage in STAGES:
        if is_done(layout, stage):
            marker = _marker(layout, stage)
            lines.append(f"  {stage:<9} done     {marker['summary']} ({marker['seconds']:.0f} s)")
        else:
            lines.append(f"  {stage:<9} {'started' if _started(layout, stage) else 'pending'}")
    return "\n".join(lines)


def _started(layout: RunLayout, stage: str) -> bool:
    return OUTPUTS[stage](layout).exists() or (stage == "distill" and (layout.distill / "checkpoints").exists())


def _family(ctx: RunContext) -> str:
    return model_family(ctx.model)


def model_family(model: str) -> str:
    """sd3 or flux, from the transformer's config.json (nothing is loaded)."""
    from hprune.arch import adapter_for_class
    from hprune.folders.paths import model_folder

    config = json.loads((model_folder(model) / "config.json").read_text())
    return adapter_for_class(config.get("_class_name", "")).family


def _versions() -> dict:
    from hprune.profile import versions

    return versions()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
