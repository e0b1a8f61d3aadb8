"""The method ablation on the shapes testbed (paper Tables 1 and 3).

For each ratio, rows with the same distillation budget:
`lastk`, `koala`, `bkscore` (their ranking + plain distillation), `hpp`
(HPP alone, no distillation), `hpp+distill` (HPP's plan, plain distillation:
what PWP itself adds is `hpp+pwp` against it), `hpp+pwp`, `hpp+pwp+sgdistill`;
optionally each again with 4-bit weights. Every row is scored on the held-out
test split with ShapesEval and compared with the teacher:
degradation = mean relative drop of the semantic and quality scores.

Each (row, distillation seed) is an independent job writing its own JSON file
and a sidecar `.npz` of per-image scores, so the table resumes after a kill and
jobs run side by side (`jobs`) on one GPU. With several `seeds` every distilled
row runs once per seed (the training renders are shared; `hpp` alone does not
train and runs once); the table row is the mean over seeds, with
`degradation_ci95` a Student-t 95% interval over the seeds' degradations and
`seeds` the list. At each ratio (and 4-bit backend) `hpp+pwp` is compared with
the best baseline (the lowest mean degradation among lastk, koala, bkscore:
the strongest opponent, so choosing it on test can only favour the baseline)
by a paired bootstrap over prompts (`hprune.metrics.intervals`); the result is
the `vs_best_baseline` entry of the `hpp+pwp` row.

torch and the training loop are imported inside the functions that run rows:
`hprune ablate --help` reads METHODS without them.
"""

from __future__ import annotations

import copy
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

from hprune.core.cuda import avoid_cudnn_attention
from hprune.distill import DistillConfig
from hprune.core.errors import HpruneError
from hprune.core.files import write_atomic, write_json
from hprune.planning.plan import check_ratio
from hprune.quant.names import DEFAULT_ROUNDING, DEFAULT_SKIP

# A method is its ranker, then what distillation adds ("+"-separated); `hpp` alone is not distilled.
METHODS = ("lastk", "koala", "bkscore", "hpp", "hpp+distill", "hpp+pwp", "hpp+pwp+sgdistill")
BASELINES = ("lastk", "koala", "bkscore")
OURS = "hpp+pwp"  # the recipe's method; fixed in advance, never picked on test
DATA_FILE = "distill_data.safetensors"


@dataclass
class AblateConfig:
    ratios: tuple[float, ...] = (0.2, 0.3)
    methods: tuple[str, ...] = METHODS
    quant: str | None = None          # also score each row with this 4-bit backend
    seeds: tuple[int, ...] | None = None  # distillation seeds per row; None: just `distill.seed`
    r_thres: float | str | None = None  # hpp rows: blocks up to here, then subcomponents; "val": chosen per ratio
    r_thres_steps: int = 0            # "val": distil each candidate this many steps (HPP+PWP) before scoring it
    distill: DistillConfig = field(default_factory=DistillConfig)
    data_size: int = 8192
    split: str = "test"
    per_category: int = 64
    eval_steps: int = 8
    eval_batch: int = 128
    jobs: int = 1

    def __post_init__(self):
        for r in self.ratios:
            check_ratio(r, "--ratios")
        if isinstance(self.r_thres, str):
            if self.r_thres != "val":
                raise HpruneError(f"--r-thres must be a ratio or 'val', got '{self.r_thres}'.")
        elif self.r_thres is not None:
            check_ratio(self.r_thres, "--r-thres")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise HpruneError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}.")
        if self.jobs < 1:
            raise HpruneError(f"--jobs must be at least 1, got {self.jobs}.")
        if self.r_thres_steps < 0:
            raise HpruneError(f"--r-thres-steps must be 0 or more, got {self.r_thres_steps}.")
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)
                                       or any(int(x) != x or x < 0 for x in self.seeds)):
            raise HpruneError(f"--seeds takes distinct whole numbers >= 0 separated by commas, like 0,1,2; "
                              f"got {self.seeds}.")

    @property
    def distill_seeds(self) -> tuple[int, ...]:
        return tuple(self.seeds) if self.seeds else (self.distill.seed,)


@dataclass(frozen=True)
class RowSpec:
    method: str
    ratio: float
    seed: int = 0  # distillation seed; seed 0 keeps the single-seed tables' names

    @property
    def name(self) -> str:
        return f"{self.method}-{self.ratio:g}" + (f"-s{self.seed}" if self.seed else "")

    def variant(self, quant: str) -> str:
        """The name of this row's `quant` twin ("none": the row itself), e.g. for its sample strip."""
        return self.name if quant == "none" else f"{self.name}-{quant}"


def degradation(teacher: dict, row: dict) -> float | None:
    """Mean relative drop of the two scores; a score the teacher never earns
    (0, as an untrained toy teacher) has no relative drop and is left out."""
    drops = [(teacher[k] - row[k]) / teacher[k] for k in ("semantic", "quality") if teacher[k] > 0]
    return sum(drops) / len(drops) if drops else None


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def score_transformer(pipe, transformer, cfg: AblateConfig, strip: Path | None = None, progress: bool = False) -> dict:
    """ShapesEval scores of the pipeline drawing with `transformer`; with `strip`, also a PNG of
    the first image of every category (the same prompts and seeds for every row); `progress`
    shows a bar per batch of `cfg.eval_batch` images."""
    from hprune.generate.images import GenerationConfig, generate_images, save_grid
    from hprune.metrics.intervals import ImageScores
    from hprune.toy.shapes_eval import evaluate
    from hprune.toy.splits import eval_set
    from hprune.toy.world import CATEGORIES

    items = eval_set(cfg.split, cfg.per_category)
    original, pipe.transformer = pipe.transformer, transformer
    try:
        images = generate_images(pipe, [i.prompt for i in items], [i.seed for i in items],
                                 GenerationConfig(steps=cfg.eval_steps, batch_size=cfg.eval_batch), progress=progress)
    finally:
        pipe.transformer = original
    if strip is not None:
        firsts = images[:: cfg.per_category]
        save_grid(firsts, strip, rows=1, cols=len(firsts))
    report = evaluate(images, [i.prompt for i in items])
    return {"semantic": report.semantic, "quality": report.quality, "per_category": report.per_category,
            "per_image": ImageScores.from_report(report.per_prompt, CATEGORIES)}


def save_per_image(path: Path, scores: dict[str, "ImageScores"]) -> None:
    """{variant: per-image scores} into one .npz (the paired bootstrap reads it)."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **{k: v for name, s in scores.items() for k, v in s.to_arrays(f"{name}/").items()})
    write_atomic(path, buf.getvalue())


def load_per_image(path: Path, name: str) -> "ImageScores | None":
    import numpy as np

    from hprune.metrics.intervals import ImageScores

    if not path.is_file():
        return None  # a row scored before per-image scores were kept
    with np.load(path) as data:
        return ImageScores.from_npz(data, f"{name}/") if f"{name}/semantic" in data else None


def teacher_file(out: Path, split: str) -> Path:
    return out / ("teacher.json" if split == "test" else f"teacher-{split}.json")


def teacher_scores(teacher: str, out: Path, cfg: AblateConfig, pipe=None) -> dict:
    """The reference every row is compared with, on `cfg.split` (the test split's is teacher.json)."""
    path = teacher_file(out, cfg.split)
    if path.is_file():
        return json.loads(path.read_text())
    from hprune.toy.pipeline import load_pipeline

    avoid_cudnn_attention()
    pipe = pipe or load_pipeline(teacher, device=_device())
    t0 = time.time()
    strip = out / "teacher.png" if cfg.split == "test" else None
    scores = {**score_transformer(pipe, pipe.transformer, cfg, strip), "teacher": teacher,
              "params": sum(p.numel() for p in pipe.transformer.parameters()), "gpu_seconds": 0.0}
    scores["eval_seconds"] = round(time.time() - t0, 2)
    save_per_image(path.with_suffix(".npz"), {"none": scores.pop("per_image")})
    write_json(path, scores)
    return scores


def distill_data(pipe, out: Path, cfg: AblateConfig):
    from hprune.distill.data import DistillData
    from hprune.distill.sources import shapes_data

    path = out / DATA_FILE
    if not path.is_file():
        shapes_data(pipe, cfg.data_size, seed=cfg.distill.seed).save(path)
    return DistillData.load(path)


def train_row(spec: RowSpec, pipe, run, out: Path, cfg: AblateConfig):
    """The row's student: pruned by its ranker, distilled unless `hpp` alone."""
    from hprune.distill import distill
    from hprune.distill.sensitivity import load_sensitivity
    from hprune.planning.scoring import plan_for_run
    from hprune.prune.surgery import prune_

    ranker, *extras = spec.method.split("+")
    overrides = {"r_thres": cfg.r_thres} if ranker == "hpp" and cfg.r_thres is not None else {}
    plan = plan_for_run(run, ranker, spec.ratio, **overrides)
    norm_means = _norm_means(run)
    row_dir = out / spec.name
    row_dir.mkdir(parents=True, exist_ok=True)
    plan.save(row_dir / "plan.json")
    if spec.method == "hpp":
        return prune_(copy.deepcopy(pipe.transformer), plan, norm_means), plan
    dcfg = replace(cfg.distill, pwp="pwp" in extras, sgdistill="sgdistill" in extras, seed=spec.seed)
    sensitivity = load_sensitivity(run.path / "contribution.jsonl") if dcfg.sgdistill else None
    student = distill(pipe.transformer, plan, distill_data(pipe, out, cfg), dcfg, row_dir / "student",
                      sensitivity=sensitivity, norm_means=norm_means, resume=True, progress=False)
    return student.eval(), plan


def _norm_means(run):
    import torch

    means_file = run.path / "norm_means.pt"
    return torch.load(means_file, weights_only=True) if means_file.is_file() else None


def chosen_r_thres(teacher: str, run_dir, out: Path, cfg: AblateConfig) -> dict[float, float]:
    """{ratio: r_thres} picked on the val split (hprune.planning.rthres), each sweep kept in out/rthres-RATIO.json."""
    from hprune.planning.rthres import best_r_thres, sweep_r_thres
    from hprune.planning.scoring import load_run
    from hprune.toy.pipeline import load_pipeline

    chosen, pipe, run = {}, None, load_run(run_dir)
    for ratio in cfg.ratios:
        path = out / f"rthres-{ratio:g}.json"
        if not path.is_file():
            avoid_cudnn_attention()
            pipe = pipe or load_pipeline(teacher, device=_device())
            rows = sweep_r_thres(run, ratio, _val_loss(pipe, run, teacher, out, cfg))
            write_json(path, {"ratio": ratio, "split": "val", "distill_steps": cfg.r_thres_steps,
                              "chosen": best_r_thres(rows), "candidates": rows})
        chosen[ratio] = json.loads(path.read_text())["chosen"]
    return chosen


def _val_loss(pipe, run, teacher: str, out: Path, cfg: AblateConfig):
    """plan -> degradation on val of its student: pruned only, or distilled `r_thres_steps` with PWP
    (what the table's hpp+pwp row will do, shortened), since how well a plan distils is what counts."""
    from hprune.distill import distill
    from hprune.prune.surgery import prune_

    val = replace(cfg, split="val")
    ref = teacher_scores(teacher, out, val, pipe)
    norm_means = _norm_means(run)
    data = dcfg = None  # loaded once for all candidates, and only when they are distilled
    if cfg.r_thres_steps:
        data = distill_data(pipe, out, cfg)
        dcfg = replace(cfg.distill, steps=cfg.r_thres_steps, checkpoint_every=cfg.r_thres_steps,
                       pwp=True, sgdistill=False)

    def loss_of_plan(plan):
        if data is not None:
            work = out / "rthres" / f"{plan.ratio_target:g}-{plan.r_thres:g}"
            student = distill(pipe.transformer, plan, data, dcfg, work, norm_means=norm_means,
                              resume=True, progress=False).eval()
        else:
            student = prune_(copy.deepcopy(pipe.transformer), plan, norm_means)
        return degradation(ref, score_transformer(pipe, student, val))

    return loss_of_plan


def run_row(spec: RowSpec, teacher: str, run_dir: str, out_dir: str, cfg: AblateConfig) -> list[dict]:
    """Train and score one row at one seed (and its 4-bit twin); idempotent. Writes
    out/NAME.json (the rows, written last: the job's done-marker) and out/NAME.npz
    (per-image scores of each variant)."""
    import torch

    from hprune.planning.scoring import load_run
    from hprune.toy.pipeline import load_pipeline

    out = Path(out_dir)
    done = out / f"{spec.name}.json"
    if done.is_file():  # ablate() has refused stale twins (_checked_rows) before any job started
        return json.loads(done.read_text())
    torch.manual_seed(spec.seed)
    avoid_cudnn_attention()
    pipe = load_pipeline(teacher, device=_device())
    ref = json.loads(teacher_file(out, cfg.split).read_text())
    t0 = time.time()
    student, plan = train_row(spec, pipe, load_run(run_dir), out, cfg)
    variants = [("none", student, None, None)] + ([(cfg.quant, *_quantized(student, cfg.quant, pipe))] if cfg.quant else [])
    rows, per_image = [], {}
    for quant, model, kept, rounding in variants:
        scores = score_transformer(pipe, model, cfg, out / f"{spec.variant(quant)}.png")
        per_image[quant] = scores.pop("per_image")
        rows.append({"teacher": teacher, "method": spec.method, "ratio": spec.ratio, "quant": quant,
                     "params": sum(p.numel() for p in student.parameters()), "ratio_reached": plan.ratio_reached,
                     "r_thres": plan.r_thres, "semantic": scores["semantic"], "quality": scores["quality"],
                     "degradation": degradation(ref, scores), "per_category": scores["per_category"],
                     "seed": spec.seed, "gpu_seconds": round(time.time() - t0, 2) if _device() == "cuda" else 0.0,
                     "seconds": round(time.time() - t0, 2), "kept_16bit": kept, "rounding": rounding})
    save_per_image(out / f"{spec.name}.npz", per_image)
    write_json(done, rows)
    return rows


def _quantized(student, backend: str, pipe) -> tuple:
    """(a 4-bit copy of `student` as `hprune quantize` makes it: the backend's default 16-bit layers and
    rounding, GPTQ calibrated on the train split drawn by `student` in `pipe`; those layers' names; the rounding)."""
    from hprune.quant.calibration import default_calibration
    from hprune.quant.quantize import QuantConfig, quantize_

    model = copy.deepcopy(student)
    config = QuantConfig(backend=backend, rounding=DEFAULT_ROUNDING.get(backend, "nearest"))
    calibration = default_calibration(pipe) if config.rounding == "gptq" else None
    return model, quantize_(model, config, calibration=calibration).kept, config.rounding


def _checked_rows(done: Path) -> list[dict]:
    """A finished job's rows, refused where its 4-bit twin was made with older defaults (every linear
    quantized, before `kept_16bit`; rounded to nearest, before `rounding`): a table must not mix kinds of twin."""
    rows = json.loads(done.read_text())
    old = [r for r in rows if r["quant"] in DEFAULT_SKIP and ("kept_16bit" not in r or "rounding" not in r)]
    if old:
        what = ("every linear layer quantized, before w4fp8 kept its input and output layers in 16 bit by default"
                if "kept_16bit" not in old[0] else "weights rounded to nearest, before w4fp8 rounded by GPTQ by default")
        raise HpruneError(f"{done} holds a 4-bit twin row measured with {what}; delete {done.name} and "
                          f"{done.with_suffix('.npz').name} to score that job again from its saved student, or "
                          f"ablate into a fresh --out.")
    return rows


def ablate(teacher: str, run_dir: str | Path, out_dir: str | Path, cfg: AblateConfig) -> list[dict]:
    """All rows of one teacher; returns them in table order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = [RowSpec(m, r, seed) for r in cfg.ratios for m in cfg.methods for seed in _seeds_of(m, cfg)]
    for spec in specs:  # before anything is written or run: a stale twin stops the run at once
        if (out / f"{spec.name}.json").is_file():
            _checked_rows(out / f"{spec.name}.json")
    write_json(out / "config.json", {**asdict(cfg), "teacher": teacher, "run_dir": str(run_dir)})
    teacher_scores(teacher, out, cfg)
    if any(m != "hpp" for m in cfg.methods) and not (out / DATA_FILE).is_file():
        from hprune.toy.pipeline import load_pipeline

        distill_data(load_pipeline(teacher, device=_device()), out, cfg)  # once, before jobs share it
    chosen = chosen_r_thres(teacher, run_dir, out, cfg) if cfg.r_thres == "val" else {}
    row_cfgs = [replace(cfg, r_thres=chosen[s.ratio]) if chosen else cfg for s in specs]
    if cfg.jobs == 1:
        results = [run_row(s, teacher, str(run_dir), str(out), c) for s, c in zip(specs, row_cfgs)]
    else:
        with ProcessPoolExecutor(cfg.jobs, mp_context=get_context("spawn")) as pool:
            # Seed-major submission: a run cut short still has every row at its first seed.
            order = sorted(range(len(specs)), key=lambda i: cfg.distill_seeds.index(specs[i].seed))
            futures = {i: pool.submit(run_row, specs[i], teacher, str(run_dir), str(out), row_cfgs[i]) for i in order}
            results = [futures[i].result() for i in range(len(specs))]
    rows = table_rows(specs, results, out, cfg)
    quants = ["none"] + ([cfg.quant] if cfg.quant else [])
    first = cfg.distill_seeds[0]
    sample_sheet(out, ["teacher"] + [s.variant(q) for q in quants for s in specs if s.seed == first])
    return rows


def table_from_jobs(out_dir: str | Path) -> tuple[dict, list[dict]]:
    """(teacher scores, table rows) rebuilt from a finished ablation folder (what `ablate` returned),
    without a GPU: its config.json names the rows; each (row, seed) job's JSON and .npz are read back.

    Raises HpruneError naming the jobs that have not finished."""
    out = Path(out_dir)
    if not (out / "config.json").is_file():
        raise HpruneError(f"{out} has no config.json: it is not an ablation folder written by `hprune ablate`.")
    saved = json.loads((out / "config.json").read_text())
    cfg = AblateConfig(ratios=tuple(saved["ratios"]), methods=tuple(saved["methods"]), quant=saved["quant"],
                       seeds=tuple(saved["seeds"]) if saved["seeds"] else None, split=saved["split"],
                       distill=DistillConfig(seed=saved["distill"]["seed"]))
    specs = [RowSpec(m, r, seed) for r in cfg.ratios for m in cfg.methods for seed in _seeds_of(m, cfg)]
    missing = [s.name for s in specs if not (out / f"{s.name}.json").is_file()]
    if missing:
        raise HpruneError(f"{len(missing)} jobs in {out} have not finished ({', '.join(missing[:4])}"
                          f"{', ...' if len(missing) > 4 else ''}); run `hprune ablate` into it again to finish them.")
    results = [json.loads((out / f"{s.name}.json").read_text()) for s in specs]
    return json.loads(teacher_file(out, cfg.split).read_text()), table_rows(specs, results, out, cfg)


def _seeds_of(method: str, cfg: AblateConfig) -> tuple[int, ...]:
    """`hpp` alone is pruned, not trained: no seed changes it, so it runs once."""
    return cfg.distill_seeds[:1] if method == "hpp" else cfg.distill_seeds


def table_rows(specs: list[RowSpec], results: list[list[dict]], out: Path, cfg: AblateConfig) -> list[dict]:
    """One row per (ratio, method, quant), the mean over its seeds, in table order; the
    `hpp+pwp` rows carry the paired bootstrap against the best baseline."""
    runs: dict[tuple, list[list[dict]]] = {}
    for spec, rows in zip(specs, results):
        runs.setdefault((spec.ratio, spec.method), []).append(rows)
    table = [mean_row(list(seed_rows)) for per_seed in runs.values() for seed_rows in zip(*per_seed)]
    add_paired_bootstrap(table, out, cfg)
    return table


def mean_row(runs: list[dict]) -> dict:
    """A row's runs at each seed -> today's keys as means over seeds (gpu_seconds, seconds: sums),
    plus `seeds`, `degradation_per_seed` and `degradation_ci95` (Student-t, 95%, over seeds)."""
    from hprune.metrics.intervals import t_interval

    mean = lambda values: sum(values) / len(values)
    row = {k: v for k, v in runs[0].items() if k != "seed"}
    row["semantic"], row["quality"] = (mean([r[k] for r in runs]) for k in ("semantic", "quality"))
    row["per_category"] = {c: {k: mean([r["per_category"][c][k] for r in runs]) if k != "n" else v["n"] for k in v}
                           for c, v in runs[0]["per_category"].items()}
    per_seed = [r["degradation"] for r in runs]
    known = None not in per_seed
    row["degradation"] = mean(per_seed) if known else None
    row["gpu_seconds"], row["seconds"] = (round(sum(r[k] for r in runs), 2) for k in ("gpu_seconds", "seconds"))
    row["seeds"] = [r.get("seed", 0) for r in runs]
    row["degradation_per_seed"] = per_seed
    row["degradation_ci95"] = t_interval(per_seed) if known else None
    return row


def add_paired_bootstrap(table: list[dict], out: Path, cfg: AblateConfig) -> None:
    """At each (ratio, quant): `hpp+pwp` vs the baseline of lowest mean degradation, paired over
    prompts (hprune.metrics.intervals.paired_bootstrap), into the hpp+pwp row's `vs_best_baseline`."""
    teacher = load_per_image(teacher_file(out, cfg.split).with_suffix(".npz"), "none")
    for ours in [r for r in table if r["method"] == OURS and r["degradation"] is not None]:
        rivals = [r for r in table if r["method"] in BASELINES and r["degradation"] is not None
                  and (r["ratio"], r["quant"]) == (ours["ratio"], ours["quant"])]
        if not rivals:
            continue
        best = min(rivals, key=lambda r: r["degradation"])
        paired = _paired(out, teacher, ours, best)
        if paired is not None:
            ours["vs_best_baseline"] = {"baseline": best["method"], **paired}


def compare_methods(out: str | Path, table: list[dict], ours: str, other: str, split: str = "test") -> list[dict]:
    """`ours` vs `other` at each (ratio, quant) both rows have: the paired bootstrap over prompts
    (hprune.metrics.intervals.paired_bootstrap) as {ratio, quant, baseline: other, ...}; e.g. hpp+pwp
    vs hpp+distill measures PWP's own effect. Rows without per-image scores are left out."""
    out = Path(out)
    teacher = load_per_image(teacher_file(out, split).with_suffix(".npz"), "none")
    found = []
    for a in [r for r in table if r["method"] == ours]:
        b = next((r for r in table if r["method"] == other and (r["ratio"], r["quant"]) == (a["ratio"], a["quant"])), None)
        paired = _paired(out, teacher, a, b) if b is not None else None
        if paired is not None:
            found.append({"ratio": a["ratio"], "quant": a["quant"], "baseline": other, **paired})
    return found


def _paired(out: Path, teacher, ours: dict, other: dict) -> dict | None:
    """The paired bootstrap of two rows over the same prompts; None where per-image scores are missing."""
    from hprune.metrics.intervals import paired_bootstrap

    sets = [_seed_scores(out, r) for r in (ours, other)]
    if teacher is None or None in sets[0] + sets[1]:
        return None
    return paired_bootstrap(teacher, *sets)


def _seed_scores(out: Path, row: dict) -> list:
    return [load_per_image(out / f"{RowSpec(row['method'], row['ratio'], seed).name}.npz", row["quant"])
            for seed in row["seeds"]]


def sample_sheet(out: Path, names: list[str], to: Path | None = None) -> Path | None:
    """The rows' sample strips (out/<name>.png) stacked in the given order into `to` (default
    out/samples.png), the names beside it (samples.txt); None if no strip exists."""
    import numpy as np
    from PIL import Image

    found = [n for n in names if (out / f"{n}.png").is_file()]
    if not found:
        return None
    strips = [np.asarray(Image.open(out / f"{n}.png").convert("RGB")) for n in found]
    to = Path(to) if to is not None else out / "samples.png"
    Image.fromarray(np.concatenate(strips)).save(to)
    to.with_suffix(".txt").write_text("\n".join(found) + "\n")
    return to


def markdown_table(teacher: dict, rows: list[dict]) -> str:
    """The rows (removed share, seeds and each seed's degradation in each), then the paired comparisons if any."""
    lines = ["| method | ratio | removed | quant | params | seeds | semantic | quality | degradation | 95% CI | per seed | GPU s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
             f"| teacher | 0 | 0% | none | {teacher['params']:,} | - | {teacher['semantic']:.3f} | "
             f"{teacher['quality']:.3f} | - | - | - | - |"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['ratio']:g} | {_percent(r.get('ratio_reached'))} | {r['quant']} | "
                     f"{r['params']:,} | {len(r.get('seeds', [0]))} | {r['semantic']:.3f} | {r['quality']:.3f} | "
                     f"{_percent(r['degradation'])} | {_interval(r.get('degradation_ci95'))} | "
                     f"{_per_seed(r.get('degradation_per_seed'))} | {r['gpu_seconds']:.0f} |")
    paired = [r for r in rows if r.get("vs_best_baseline")]
    return "\n".join(lines + (_paired_table(paired) if paired else []))


def _paired_table(rows: list[dict]) -> list[str]:
    lines = ["", f"{OURS} vs the best baseline at each ratio: paired bootstrap over prompts "
             f"({rows[0]['vs_best_baseline']['resamples']} resamples); diff = degradation of {OURS} minus "
             "the baseline's.", ""]
    return lines + paired_lines([{"ratio": r["ratio"], "quant": r["quant"], **r["vs_best_baseline"]} for r in rows])


def paired_lines(pairs: list[dict]) -> list[str]:
    """Markdown rows of paired comparisons ({ratio, quant, baseline, diff, ...} as paired_bootstrap gives)."""
    lines = ["| ratio | quant | baseline | diff | 95% CI | P(ours not better) | baseline / ours | 95% CI |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for b in pairs:
        times, ci = "n/a", "-"
        if "baseline_over_ours" in b:
            times = f"{b['baseline_over_ours']:.1f}x"
            ci = "[" + ", ".join(f"{x:.1f}x" for x in b["baseline_over_ours_ci95"]) + "]"
        lines.append(f"| {b['ratio']:g} | {b['quant']} | {b['baseline']} | {_percent(b['diff'])} | "
                     f"{_interval(b['diff_ci95'])} | {b['p_not_better']:.3f} | {times} | {ci} |")
    return lines


def _per_seed(values: list[float | None] | None) -> str:
    return "-" if not values or len(values) < 2 else ", ".join("n/a" if v is None else f"{100 * v:.1f}" for v in values)


def _interval(pair: list[float] | None) -> str:
    return "-" if pair is None else f"[{100 * pair[0]:.1f}, {100 * pair[1]:.1f}]%"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


