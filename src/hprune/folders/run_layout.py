"""The run folder of `hprune run`: every path and file format, declared once.

    RUN_DIR/
      recipe.toml            the effective recipe (defaults < recipe file < --set), written first
      run.json               {"model", "family", "ratio", "quant", "recipe", "command", "versions", "started"}
      stages/<stage>.json    one per finished stage: {"stage", "summary" (one line), "seconds", "finished", ...}
      analysis/              `hprune profile`'s run folder (contribution.jsonl, units.json, reference.json,
                             similarity.json, prompts.jsonl, config.json, norm_means.pt when norm_mode is mean)
      plan/plan.json         the HPP plan (hprune.planning.plan.Plan; units in original indices)
      prune/model/           the pruned model (a model folder with hprune.json)
      distill/               `hprune distill`'s run folder: distill/model/, loss.csv, training_summary.json
      quantize/model/        the 4-bit model (only with a quant backend)
      model/                 the compressed model: a copy of the last stage's model folder
      samples/<variant>/     a `hprune generate` folder per variant (generations.jsonl, NNNNN.png,
                             generation.json, model.json) and scores.json (its entry of SCORES below,
                             without degradation; written by the evaluate stage, which resumes by variant)
      scores.json            SCORES below
      memory.json            MEMORY below
      report.html            one self-contained page (images embedded), and report.md its Markdown twin
      report.md              (its figures in report_files/)

Variants, in this order: "teacher", "pruned", "distilled", "quantized" (a variant whose stage
did not run is absent).

SCORES (scores.json):
    {"metric": "shapes" | "clip:/path" | ..., "split": "test" | "prompts", "n": 64,
     "variants": [{"name": "teacher", "stage": "teacher" | "prune" | "distill" | "quantize",
                   "n": int, "params": int,
                   "components": {name: {"mean": float, "se": float}},  # the metric's, se over the prompts
                   "degradation": float | None,                        # None for the teacher
                   # the shapes testbed only (ShapesEval):
                   "semantic": float, "quality": float, "semantic_se": float, "quality_se": float,
                   "per_category": {category: {"semantic": float, "quality": float, "n": int}}}]}
    degradation = mean relative drop of the metric's components (ShapesEval: semantic and quality,
    as hprune.experiments.ablate) against the teacher.

MEMORY (memory.json):
    {"teacher": {"params": int, "weight_bytes": int},
     "compressed": {"params": int, "weight_bytes": int},
     "bench": null | {"device": str, "teacher_ms_per_step": float, "compressed_ms_per_step": float,
                      "teacher_peak_gib": float, "compressed_peak_gib": float}}
"""

from __future__ import annotations

from pathlib import Path

STAGES = ("analysis", "plan", "prune", "distill", "quantize", "generate", "evaluate", "report")
VARIANTS = ("teacher", "pruned", "distilled", "quantized")
VARIANT_STAGE = {"teacher": "teacher", "pruned": "prune", "distilled": "distill", "quantized": "quantize"}

RECIPE = "recipe.toml"
RUN_INFO = "run.json"
SCORES = "scores.json"
MEMORY = "memory.json"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
REPORT_FILES = "report_files"


class RunLayout:
    """Paths inside one run folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def stage_marker(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage}.json"

    @property
    def recipe(self) -> Path:
        return self.root / RECIPE

    @property
    def info(self) -> Path:
        return self.root / RUN_INFO

    @property
    def analysis(self) -> Path:
        return self.root / "analysis"

    @property
    def plan(self) -> Path:
        return self.root / "plan" / "plan.json"

    @property
    def pruned(self) -> Path:
        return self.root / "prune" / "model"

    @property
    def distill(self) -> Path:
        return self.root / "distill"

    @property
    def distilled(self) -> Path:
        return self.root / "distill" / "model"

    @property
    def quantized(self) -> Path:
        return self.root / "quantize" / "model"

    @property
    def model(self) -> Path:
        return self.root / "model"

    def samples(self, variant: str) -> Path:
        return self.root / "samples" / variant

    @property
    def scores(self) -> Path:
        return self.root / SCORES

    @property
    def memory(self) -> Path:
        return self.root / MEMORY

    @property
    def report_html(self) -> Path:
        return self.root / REPORT_HTML

    @property
    def report_md(self) -> Path:
        return self.root / REPORT_MD
