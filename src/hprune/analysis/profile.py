"""Contribution analysis: remove one unit (or a pair) at a time, measure the drop.

For every variant the calibration set is generated again with the variant's
units removed (reversible surgery, same prompts, seeds and steps as the
reference) and scored; `dP = P(reference) - P(removed)` per prompt gives the
mean drop and its spread. Every block gets a whole-block row, SD3's last one
too: surgery cannot delete that block, but the analysis only skips it
(`without`); the row serves SGDistill's sensitivity, and no plan removes it.
The run directory holds:

- `config.json`      the effective settings, command and versions (a resumed
                     run must match them);
- `prompts.jsonl`    the calibration set: prompt, seed and, on the shapes
                     testbed, the scene the prompt describes;
- `units.json`       the model's units and parameter counts (what `hprune
                     plan` needs, so it never loads the model);
- `reference.json`,  the reference scores and images, computed once;
  `reference.npz`
- `similarity.json`  KOALA's cosine similarity of each block's input and
                     output hidden states on the reference generation;
- `contribution.jsonl` one line per variant, appended and flushed as each
                     finishes; a re-run skips what is done, and the finished
                     file is rewritten in canonical order, so `kill -9` at any
                     moment loses at most the variants in flight.

Variants are sharded across the processes of `accelerate launch` (process i
takes every n-th pending variant) and appended to the one table; appends of
whole lines with O_APPEND do not interleave on a local file system.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hprune.model import get_adapter
from hprune.model.sampling import PromptSeed, Sampler, SamplingConfig, check_size, is_diffusers, make_sampler
from hprune.model.stubs import SkippedBlock
from hprune.model.units import NORM_MODES, SCOPES, Unit
from hprune.analysis.unit_table import ModelUnits
from hprune.core.errors import HpruneError
from hprune.core.files import read_jsonl, write_atomic
from hprune.core.files import write_json as _write_json
from hprune.core.provenance import versions
from hprune.metrics import Metric, ShapesMetric, check_scores, get_metric
from hprune.prune.surgery import calibrate_norms, removed

TABLE = "contribution.jsonl"


@dataclass
class ProfileConfig:
    metric: str = "shapes"
    split: str | None = "calib"  # shapes testbed split; or `prompts` (a file)
    prompts: str | None = None
    n_prompts: int = 64
    seed: int = 0  # image i uses seed + i
    steps: int | None = None  # None: the pipeline's default (shapes) or 4 (few-step real models)
    guidance: float | None = None  # None: the pipeline's default (shapes) or 0
    size: int | None = None  # image side for diffusers pipelines; None: the pipeline's default
    max_sequence_length: int | None = None
    batch_size: int = 64
    scope: str = "all"
    pairs: bool = False
    norm_mode: str = "identity"

    def __post_init__(self):
        problems = []
        if self.n_prompts < 1 or self.batch_size < 1:
            problems.append("--n-prompts and --batch-size must be at least 1")
        if self.scope not in SCOPES:
            problems.append(f"--scope must be one of {SCOPES}, got '{self.scope}'")
        if self.norm_mode not in NORM_MODES:
            problems.append(f"--norm-mode must be one of {NORM_MODES}, got '{self.norm_mode}'")
        if self.steps is not None and self.steps < 1:
            problems.append("--steps must be at least 1")
        if problems:
            raise HpruneError("; ".join(problems) + ".")

    def settings(self) -> dict:
        """What must match for a run directory to be resumed (scope and pairs
        only add variants, so they may change between runs)."""
        return {k: v for k, v in asdict(self).items() if k not in ("scope", "pairs")}

    def sampling(self) -> SamplingConfig:
        """How every variant draws the calibration set."""
        return SamplingConfig(steps=self.steps, guidance=self.guidance, size=self.size,
                              max_sequence_length=self.max_sequence_length, batch_size=self.batch_size)


# ----------------------------------------------------------------- calibration set


def calibration_set(config: ProfileConfig) -> list[PromptSeed]:
    """The prompts and seeds every variant is generated from."""
    if config.prompts:
        return _from_file(Path(config.prompts), config)
    if config.split != "calib":
        raise HpruneError(f"--split '{config.split}' is unknown; use --split calib (shapes testbed) or --prompts FILE.")
    return _shapes_calibration(config.n_prompts, config.seed)


def _shapes_calibration(n: int, seed: int) -> list[PromptSeed]:
    """Category-balanced prompts of the `val` split (never `test`), categories
    taken in turn so that any n keeps the balance."""
    from hprune.toy.splits import prompts_by_category

    groups = list(prompts_by_category("val").values())
    prompts = [groups[i % len(groups)][(i // len(groups)) % len(groups[i % len(groups)])] for i in range(n)]
    return [PromptSeed(p, seed + i) for i, p in enumerate(prompts)]


def _from_file(path: Path, config: ProfileConfig) -> list[PromptSeed]:
    """One prompt a line, or JSON lines with `prompt` (and optionally `seed`)."""
    if not path.is_file():
        raise HpruneError(f"prompt file {path} does not exist; pass a text file with one prompt a line.")
    items = []
    for i, line in enumerate(l for l in path.read_text().splitlines() if l.strip()):
        if line.lstrip().startswith("{"):
            record = json.loads(line)
            items.append(PromptSeed(str(record["prompt"]), int(record.get("seed", config.seed + i))))
        else:
            items.append(PromptSeed(line.strip(), config.seed + i))
    if not items:
        raise HpruneError(f"prompt file {path} holds no prompts; write one prompt a line.")
    return items[: config.n_prompts]


def check_fits(pipe, config: ProfileConfig, metric: Metric | None = None) -> None:
    """Before anything is written: the metric and --size fit this pipeline."""
    if is_diffusers(pipe) and isinstance(metric, ShapesMetric):
        raise HpruneError("the shapes metric scores only the shapes teachers' 64x64 images; for a diffusers "
                          "pipeline pass --metric clip:/path/to/clip or hps:/path/to/hps (a local weights folder).")
    check_size(pipe, config.size)


# ----------------------------------------------------------------- variants


def variants(model, scope: str = "all", pairs: bool = False, every_block: bool = False) -> list[tuple[Unit, ...]]:
    """Units to remove, one variant each, in forward order: per block the whole
    block, then each subcomponent, then (with `pairs`) each pair of them.

    A block surgery cannot remove whole (`skip_only_blocks`: SD3's last) gets a
    whole-block variant only with `every_block`, measured by `without`; `hprune
    profile` and `--fast` ask for it (SGDistill needs every block's dP)."""
    infos = get_adapter(model).units(model)
    by_block: dict[Unit, list[Unit]] = {}
    for info in infos:
        if info.params > 0 or info.unit.is_block:
            by_block.setdefault(info.unit.block_unit(), []).append(info.unit)
    out = []
    for block, units in by_block.items():
        subs = [u for u in units if not u.is_block]
        if scope != "subcomponents" and (block in units or every_block):
            out.append((block,))
        if scope != "blocks":
            out += [(u,) for u in subs]
            if pairs:
                out += list(itertools.combinations(subs, 2))
    return out


def variant_key(units) -> str:
    return "+".join(u.key for u in units)


def skip_only_blocks(model) -> set[Unit]:
    """Whole blocks the analysis can remove but surgery cannot: SD3's last block
    (context_pre_only), which a saved model could not load without. Their rows
    are for SGDistill's sensitivity only: units.json does not list them whole,
    so no plan (hprune.planning.scoring.make_plan) ever removes them."""
    adapter = get_adapter(model)
    return {unit for unit, _ in adapter.blocks(model) if not adapter.block_removable(model, unit)}


@contextmanager
def without(model, units, norm_mode: str = "identity", norm_means: dict | None = None):
    """`hprune.prune.surgery.removed`, and skip-only blocks skipped as surgery skips any block
    (`SkippedBlock`: the block's inputs pass through, as with diffusers' `skip_layers`).
    For SD3's last block that is enough: the final norm reads only the hidden states,
    and nothing reads the context stream after the last block."""
    skip = skip_only_blocks(model)
    with removed(model, [u for u in units if u not in skip], norm_mode, norm_means):
        with skipped(model, [u for u in units if u in skip]):
            yield model


@contextmanager
def skipped(model, blocks: list[Unit]):
    """Temporarily swap whole `blocks` for `SkippedBlock`s; the originals go back on exit."""
    adapter = get_adapter(model)
    slots = [(adapter.block_list(model, u.kind), u.index) for u in blocks]
    originals = [lst[i] for lst, i in slots]
    try:
        for (lst, i), block in zip(slots, originals):
            lst[i] = SkippedBlock(bool(getattr(block, "context_pre_only", False)))
        yield model
    finally:
        for (lst, i), block in zip(slots, originals):
            lst[i] = block


# ----------------------------------------------------------------- the table


read_table = read_jsonl


def repair_tail(path: Path) -> None:
    """Cut a half-written last line, so the next append starts a fresh line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with open(path, "r+b") as f:
            f.truncate(end)


def append_row(path: Path, row: dict) -> None:
    # One write() of one whole line on an O_APPEND descriptor: processes
    # appending at once never interleave, and a kill leaves whole lines.
    line = (json.dumps(row, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def finalize_table(path: Path, order: list[str]) -> list[dict]:
    """Rewrite the table in canonical variant order, one row per variant."""
    rank = {key: i for i, key in enumerate(order)}
    by_key = {}
    for row in read_table(path):
        by_key.setdefault(row["variant"], row)
    rows = sorted(by_key.values(), key=lambda r: (rank.get(r["variant"], len(rank)), r["variant"]))
    write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return rows


def write_json(path: Path, data) -> None:
    _write_json(path, data, sort_keys=True)


# ----------------------------------------------------------------- scoring a variant


def drop_row(units, reference: dict[str, np.ndarray], scores: dict[str, np.ndarray], metric: Metric, seconds: float) -> dict:
    """dP = P(reference) - P(removed), per prompt; mean, spread and every component."""
    per_prompt = reference[metric.primary] - scores[metric.primary]
    return {
        "variant": variant_key(units),
        "units": [u.key for u in units],
        "dP": float(per_prompt.mean()),
        "dP_std": float(per_prompt.std(ddof=1)) if len(per_prompt) > 1 else 0.0,
        "n_prompts": int(len(per_prompt)),
        "seconds": round(seconds, 4),
        "metric": metric.name,
        "values": {k: float(v.mean()) for k, v in scores.items()},
        "drops": {k: float(reference[k].mean() - v.mean()) for k, v in scores.items()},
    }


# ----------------------------------------------------------------- reference


class BlockSimilarity:
    """KOALA's measure: mean per-token cosine similarity between each block's
    image-stream input and output, over every call while installed."""

    def __init__(self, model):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.handles = [m.register_forward_hook(self._hook(u.key), with_kwargs=True)
                        for u, m in get_adapter(model).blocks(model)]

    def _hook(self, key: str):
        def hook(_module, args, kwargs, output):
            x = kwargs.get("hidden_states", args[0] if args else None)
            y = output[1] if isinstance(output, tuple) else output
            if x is None or y is None or x.shape != y.shape:
                return
            cos = torch.nn.functional.cosine_similarity(x.float(), y.float(), dim=-1)
            self.sums[key] = self.sums.get(key, 0) + cos.sum()
            self.counts[key] = self.counts.get(key, 0) + cos.numel()
        return hook

    def close(self) -> dict[str, float]:
        for h in self.handles:
            h.remove()
        return {k: float(self.sums[k] / self.counts[k]) for k in self.sums}


class CallRecorder:
    """Keeps the transformer's keyword arguments of every call (for calibrate_norms)."""

    def __init__(self, model):
        self.calls: list[dict] = []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, _module, _args, kwargs):
        self.calls.append({k: v.detach() if torch.is_tensor(v) else v for k, v in kwargs.items()})

    def close(self) -> list[dict]:
        self.handle.remove()
        return self.calls


def make_reference(out: Path, sampler: Sampler, metric: Metric, items: list[PromptSeed], norm_mode: str,
                   progress: bool = False) -> None:
    """Generate and score the unpruned model once; keep what variants reuse.
    reference.npz is written last, whole or not at all: it marks the reference done."""
    import io

    from hprune.core.progress import progress as progress_bar

    model = sampler.transformer
    start = time.perf_counter()
    similarity = BlockSimilarity(model)
    recorder = CallRecorder(model) if norm_mode == "mean" else None
    bar = progress_bar(desc="reference", total=1, unit="set", enabled=progress, bar_format=REFERENCE_BAR)
    try:
        images = sampler.images(on_step=bar.update)
        bar.set_postfix_str(f"scoring with {metric.name}")
        scores = check_scores(metric, metric.score(images, [it.prompt for it in items]), len(items))
    finally:
        bar.close()
        sims = similarity.close()
        calls = recorder.close() if recorder else []
    seconds = time.perf_counter() - start
    if norm_mode == "mean":
        buffer = io.BytesIO()
        torch.save(calibrate_norms(model, calls), buffer)
        write_atomic(out / "norm_means.pt", buffer.getvalue())
    write_json(out / "similarity.json", sims)
    write_json(out / "reference.json", {
        "metric": metric.name, "primary": metric.primary, "alignment": metric.alignment,
        "values": {k: float(v.mean()) for k, v in scores.items()}, "n_prompts": len(items), "seconds": round(seconds, 4),
    })
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images, **{f"score_{k}": v for k, v in scores.items()})
    write_atomic(out / "reference.npz", buffer.getvalue())


REFERENCE_BAR = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]"


def load_reference(out: Path) -> tuple[dict[str, np.ndarray], dict | None]:
    with np.load(out / "reference.npz") as data:
        scores = {k[len("score_"):]: data[k] for k in data.files if k.startswith("score_")}
    means = out / "norm_means.pt"
    return scores, (torch.load(means) if means.is_file() else None)


# ----------------------------------------------------------------- the run


def prepare_run(out: Path, config: ProfileConfig, items: list[PromptSeed], model, model_name: str, write: bool) -> None:
    """Check a resumed run matches; on the main process write what is new. Settings
    left by a run that failed before its reference was made hold no results: the
    new settings replace them."""
    units = ModelUnits.from_model(model)
    saved = out / "config.json"
    fresh = not saved.is_file() or not (out / "reference.npz").is_file()
    if not fresh:
        old = json.loads(saved.read_text())
        if ModelUnits.load(out / "units.json").arch != units.arch:
            raise HpruneError(f"{out} holds a profile of another model ({old.get('model') or 'unnamed'}); "
                              f"pass that model to resume, or start afresh with a new --out (or delete {out}).")
        changed = settings_diff(old["settings"], config.settings())
        if changed:
            raise HpruneError(f"{out} holds a profile made with other settings ({changed}); pass the same settings "
                              f"to resume, or start afresh with a new --out (or delete {out}).")
    if not write or not fresh:
        return
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "prompts.jsonl", "".join(json.dumps(asdict(it)) + "\n" for it in items))
    write_json(out / "units.json", units.to_dict())
    # n_prompts is a limit; a shorter --prompts file uses fewer: prompts_used says how many
    write_json(saved, {"settings": config.settings(), "prompts_used": len(items), "model": model_name,
                       "command": sys.argv, "versions": versions()})


def settings_diff(old: dict, new: dict) -> str:
    """'--size 64 -> 16, --metric shapes -> clip:/m': each setting that differs, as its flag."""
    def show(value):
        return "(unset)" if value is None else value

    keys = [k for k in dict.fromkeys([*new, *old]) if old.get(k) != new.get(k)]  # in the order of --help
    flag = lambda k: "--fast" if k == "proxy" else f"--{k.replace('_', '-')}"  # noqa: E731  (the proxy is --fast's)
    return ", ".join(f"{flag(k)} {show(old.get(k))} -> {show(new.get(k))}" for k in keys)


def profile(pipe, config: ProfileConfig, out_dir: str | Path, model_name: str = "", progress: bool = True) -> list[dict]:
    """Run (or resume) the contribution analysis into `out_dir`; returns the table.

    Under `accelerate launch` each process takes every n-th pending variant;
    the main process writes the reference and the final table.
    """
    from accelerate import PartialState

    state, out = PartialState(cpu=not torch.cuda.is_available()), Path(out_dir)
    items = calibration_set(config)
    model = pipe.transformer
    metric = get_metric(config.metric, device=str(state.device))  # bad weights fail before anything is written
    check_fits(pipe, config, metric)
    prepare_run(out, config, items, model, model_name, write=state.is_main_process)
    sampler = make_sampler(pipe, config.sampling(), items)
    if state.is_main_process:
        repair_tail(out / TABLE)
        if not (out / "reference.npz").is_file():
            make_reference(out, sampler, metric, items, config.norm_mode, progress)
    state.wait_for_everyone()
    reference, norm_means = load_reference(out)
    order = variants(model, config.scope, config.pairs, every_block=True)
    done = {row["variant"] for row in read_table(out / TABLE)}
    # Shares by position in the canonical order: they stay disjoint however
    # late each process reads the table.
    mine = [v for i, v in enumerate(order)
            if i % state.num_processes == state.process_index and variant_key(v) not in done]
    run_variants(out, sampler, metric, mine, reference, config, norm_means, progress and state.is_main_process)
    state.wait_for_everyone()
    keys = [variant_key(v) for v in order]
    if state.is_main_process:
        return finalize_table(out / TABLE, keys)
    return read_table(out / TABLE)


def run_variants(out: Path, sampler: Sampler, metric: Metric, todo: list, reference: dict, config: ProfileConfig,
                 norm_means: dict | None, progress: bool) -> None:
    from hprune.core.progress import progress as progress_bar

    prompts = [it.prompt for batch in sampler.batches for it in batch]
    # Moves by the denoising step (a variant on CPU takes minutes), counts whole variants.
    bar = progress_bar(desc="profile", total=len(todo), unit="variant", enabled=progress,
                       bar_format="{l_bar}{bar}| {n:.2f}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
    try:
        for i, units in enumerate(todo):
            bar.set_postfix_str(variant_key(units))
            start = time.perf_counter()
            with without(sampler.transformer, list(units), config.norm_mode, norm_means):
                images = sampler.images(on_step=bar.update)
            scores = check_scores(metric, metric.score(images, prompts), len(prompts))
            append_row(out / TABLE, drop_row(units, reference, scores, metric, time.perf_counter() - start))
            bar.n = i + 1  # whole again: the steps' fractions do not sum exactly
            bar.refresh()
    finally:
        bar.close()
