"""Drive the stages of one run: check everything first, then run what is not done.

A stage is done when its marker (stages/<stage>.json) exists and its output is
there; a run killed at any point re-runs the stage it was in, and the tools
behind the stages resume (the analysis by variant, distillation from its last
checkpoint, generation and evaluation by variant), so the final numbers equal
an uninterrupted run's. run.json and recipe.toml pin what the folder holds:
resuming with another model, ratio or recipe is refused, naming the difference.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path

from hprune.core.errors import HpruneError
from hprune.core.files import write_atomic, write_json
from hprune.core.provenance import versions
from hprune.runs.context import RunContext
from hprune.folders.run_layout import STAGES, VARIANTS, RunLayout
from hprune.runs.recipe import to_toml, toml_line

KILL_AT = "HPRUNE_TEST_KILL_AT"  # tests only: see _test_kill_point

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
                             "versions": versions(), "started": _now()}, indent=2)


def read_info(layout: RunLayout) -> dict:
    """RUN/run.json, or HpruneError when it is not the record `hprune run` wrote."""
    try:
        info = json.loads(layout.info.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        info = None
    if not isinstance(info, dict) or not {"model", "ratio", "recipe", "quant"} <= info.keys():
        raise HpruneError(f"{layout.info} is damaged (it is the record `hprune run` writes first); restore it, or "
                          "start over in a new --out folder.")
    return info


def _check_same(layout: RunLayout, info: dict, recipe_text: str) -> None:
    saved = read_info(layout)
    differ = [f"{k} {saved.get(k)!r} -> {v!r}" for k, v in info.items() if k != "recipe" and saved.get(k) != v]
    old = _paper_alpha_written(layout.recipe.read_text() if layout.recipe.is_file() else "", saved.get("family"))
    has_recipe = bool(_keyed(old))
    if not has_recipe and not differ:
        raise HpruneError(f"{layout.recipe} is missing or empty (it holds the run's settings); restore it, or start "
                          "over in a new --out folder.")
    if has_recipe:  # beside another model or ratio, a lost recipe is not the news
        differ += [f"{a.strip()} -> {b.strip()}" for a, b in _changed_lines(old, recipe_text)]
    if differ:
        raise HpruneError(f"{layout.root} holds a run with other settings ({'; '.join(differ)}); resume it with the "
                          f"same command (add --recipe {layout.recipe} if the shipped recipe changed since), or pass "
                          "a new --out folder.")


def _paper_alpha_written(text: str, family: str | None) -> str:
    """A recipe.toml saved before runs wrote the family's alpha out ('# alpha = (none)'), as it is saved now."""
    from hprune.planning.scoring import PAPER_ALPHA

    if family not in PAPER_ALPHA:
        return text
    return text.replace("[plan]\n# alpha = (none)\n", f"[plan]\nalpha = {PAPER_ALPHA[family]!r}\n")


def _changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    """(old, new) 'table.key = value' lines of the settings that differ between two recipes.

    A key the saved recipe lacks was added by a newer hprune: the run ran with its default, so
    only a non-default value is a change."""
    pairs, old_lines = [], _keyed(old)
    for key, line in _keyed(new).items():
        if key not in old_lines:
            if _value(line) != _value(default_line(*key)):
                pairs.append((f"{key[0]}.{key[1]} unset (the run's recipe.toml predates it)", f"{key[0]}.{line}"))
        elif _value(old_lines[key]) != _value(line):
            pairs.append((f"{key[0]}.{old_lines[key]}", f"{key[0]}.{line}"))
    return pairs


def _value(line: str | None):
    """The value a 'key = value' line sets (None for '(none)'), so that a hand-edited
    `lr=1e-4` equals the `lr = 0.0001` a run wrote; the raw text where it is no TOML."""
    if line is None or line.endswith("= (none)"):
        return None
    try:
        return next(iter(tomllib.loads(line).values()))
    except (tomllib.TOMLDecodeError, StopIteration):
        return line


def default_line(section: str, key: str) -> str | None:
    """The 'key = value' line to_toml writes for the key's default, or None if there is none."""
    from dataclasses import MISSING, fields

    from hprune.runs.recipe import _sections

    sections = _sections()
    for f in fields(sections[section]) if section in sections else ():
        if f.name == key:
            value = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else MISSING)
            return None if value is MISSING else toml_line(key, value).lstrip("# ")
    return None


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
        _test_kill_point(stage, "start")
        summary = STAGE_FUNCTIONS[stage](ctx)
        _test_kill_point(stage, "end")  # the stage's output is written, its marker not yet
        seconds = round(time.perf_counter() - began, 2)
        ctx.layout.stage_marker(stage).parent.mkdir(exist_ok=True)
        write_json(ctx.layout.stage_marker(stage), {"stage": stage, "summary": summary, "seconds": seconds,
                                                    "finished": _now()}, indent=2)
        echo(f"{prefix}: {summary} ({seconds:.0f} s)")


def _test_kill_point(stage: str, point: str) -> None:
    """Tests only: with HPRUNE_TEST_KILL_AT=STAGE:POINT (POINT start or end) the process SIGKILLs
    itself there, as `kill -9` would (tests/runs kill a run after every stage and resume it)."""
    if os.environ.get(KILL_AT) == f"{stage}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


def _marker(layout: RunLayout, stage: str) -> dict:
    return json.loads(layout.stage_marker(stage).read_text())


def status(root: str | Path) -> str:
    """The state of each stage of a run folder, one line each."""
    layout = RunLayout(root)
    if not layout.info.is_file():
        raise HpruneError(f"{root} is not an `hprune run` folder (no run.json); pass the --out folder of a run.")
    info = read_info(layout)
    lines = [f"run of {info['model']} at ratio {info['ratio']:g} (recipe {info['recipe']}, quant {info['quant']})"]
    current = True  # the first stage not done: the one running, or where the run stopped
    for stage in STAGES:
        if is_done(layout, stage):
            marker = _marker(layout, stage)
            lines.append(f"  {stage:<9} done     {marker['summary']} ({marker['seconds']:.0f} s)")
            continue
        started = current or _started(layout, stage)
        current = False
        lines.append(f"  {stage:<9} {_progress(layout, stage) if started else 'pending'}")
    return "\n".join(lines)


def _started(layout: RunLayout, stage: str) -> bool:
    return OUTPUTS[stage](layout).exists() or (stage == "distill" and (layout.distill / "checkpoints").exists())


def _progress(layout: RunLayout, stage: str) -> str:
    """'started', and how far where the stage's files tell it."""
    counts = {"analysis": _analysis_progress, "distill": _distill_progress, "generate": _generate_progress,
              "evaluate": _evaluate_progress}.get(stage)
    detail = counts(layout) if counts else ""
    return f"started  {detail}" if detail else "started"


def _analysis_progress(layout: RunLayout) -> str:
    from hprune.core.files import read_jsonl

    return f"{len(read_jsonl(OUTPUTS['analysis'](layout)))} variants scored so far"


def _distill_progress(layout: RunLayout) -> str:
    """The last logged step (loss.csv) and the checkpoint a resume starts from, of the recipe's steps."""
    from hprune.distill.checkpoint import latest_checkpoint
    from hprune.distill.loop import LOSS_CSV

    steps = tomllib.loads(layout.recipe.read_text()).get("distill", {}).get("steps", "?")
    log = layout.distill / LOSS_CSV
    rows = log.read_text().splitlines()[1:] if log.is_file() else []
    ckpt = latest_checkpoint(layout.distill / "checkpoints")
    text = f"{int(rows[-1].split(',')[0]) + 1 if rows else 0} of {steps} steps trained"
    if ckpt is not None:
        text += f", checkpoint at step {json.loads((ckpt / 'state.json').read_text())['step']}"
    return text


def _generate_progress(layout: RunLayout) -> str:
    """Variants drawn of the variants the earlier stages made; images so far (a variant is written whole)."""
    from hprune.runs.samples import MODEL_INFO

    made = {"teacher": True, "pruned": layout.pruned.is_dir(), "distilled": layout.distilled.is_dir(),
            "quantized": layout.quantized.is_dir()}
    wanted = [v for v in VARIANTS if made[v]]
    drawn = [v for v in wanted if (layout.samples(v) / MODEL_INFO).is_file()]
    images = [len(list(layout.samples(v).glob("*.png"))) for v in drawn]
    total = f" of {images[0] * len(wanted)}" if images else ""  # every variant draws the same prompts
    return f"{len(drawn)} of {len(wanted)} variants drawn ({sum(images)}{total} images)"


def _evaluate_progress(layout: RunLayout) -> str:
    from hprune.runs.samples import MODEL_INFO
    from hprune.runs.scores import VARIANT_SCORES

    drawn = [v for v in VARIANTS if (layout.samples(v) / MODEL_INFO).is_file()]
    scored = [json.loads((layout.samples(v) / VARIANT_SCORES).read_text()) for v in drawn
              if (layout.samples(v) / VARIANT_SCORES).is_file()]
    images = sum(len(list(layout.samples(v).glob("*.png"))) for v in drawn)
    return f"{len(scored)} of {len(drawn)} variants scored ({sum(v['n'] for v in scored)} of {images} images)"


def _family(ctx: RunContext) -> str:
    return model_family(ctx.model)


def model_family(model: str) -> str:
    """sd3 or flux, from the transformer's config.json (nothing is loaded)."""
    from hprune.model import adapter_for_class
    from hprune.folders.paths import model_folder

    config = json.loads((model_folder(model) / "config.json").read_text())
    return adapter_for_class(config.get("_class_name", "")).family


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
