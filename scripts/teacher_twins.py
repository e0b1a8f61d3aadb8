"""The shapes teachers' own 4-bit twins on the test split (issue 18, item 4: "both teachers and their
20% and 30% HPP+PWP students, each with every 4-bit backend"; the students' twins come from
`hprune ablate --quant`, which has no teacher twin).

    PYTHONPATH=src python scripts/teacher_twins.py --teacher shapes-sd3 --backends w4fp8,bnb-nf4 \\
        --per-category 32 --out results/teacher_twins/shapes-sd3.json

Each teacher is scored in float32 and as each backend's 4-bit copy made as `hprune ablate` makes its
twins (`hprune.experiments.ablate._quantized`: the backend's default 16-bit layers and rounding; GPTQ
calibrated on the train split), on the same test prompts and seeds (--per-category x 8 categories; the
issue's 256 by default). `degradation` is the mean relative drop of ShapesEval's semantic and quality
scores against the float32 teacher (hprune.experiments.ablate.degradation); its 95% interval resamples
the images within each category, paired (hprune.metrics.intervals). Results are written after every
evaluation (per-image scores beside it, as .npz) and a rerun with the same --out resumes. Runs on the GPU when there is one, else on CPU
(w4fp8 through its CPU reference, 2-3x slower than float32).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def paired_interval(ref, row, resamples: int = 2000, seed: int = 0) -> list[float]:
    """95% interval of degradation(ref -> row) over resampled images (stratified by category)."""
    from hprune.metrics.intervals import seed_mean_degradation, stratified_indices

    idx = stratified_indices(ref.category, resamples, np.random.default_rng(seed))
    d = seed_mean_degradation(ref, [row], idx)
    return [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True, choices=("shapes-sd3", "shapes-flux"))
    ap.add_argument("--backends", default="w4fp8,bnb-nf4")
    ap.add_argument("--per-category", type=int, default=32)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    from hprune.core.files import write_json
    from hprune.experiments.ablate import (
        AblateConfig, _device, _quantized, degradation, load_per_image, save_per_image, score_transformer,
    )
    from hprune.toy.pipeline import load_pipeline

    cfg = AblateConfig(split="test", per_category=args.per_category)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if result.get("per_category") != args.per_category:
        result = {"teacher": args.teacher, "split": "test", "per_category": args.per_category,
                  "eval_steps": cfg.eval_steps, "rows": {}}
    pipe = load_pipeline(args.teacher, device=_device())
    scores_path = args.out.with_suffix(".npz")  # per-image scores: the paired interval reads them
    per_image = {name: load_per_image(scores_path, name) for name in result["rows"]}
    per_image = {name: s for name, s in per_image.items() if s is not None}

    def evaluate(name, model, extra=None):
        t0 = time.time()
        s = score_transformer(pipe, model, cfg)
        per_image[name] = s.pop("per_image")
        row = {"semantic": s["semantic"], "quality": s["quality"], "seconds": round(time.time() - t0, 1), **(extra or {})}
        if name != "none":
            ref = result["rows"]["none"]
            row["degradation"] = degradation(ref, row)
            row["degradation_ci95"] = paired_interval(per_image["none"], per_image[name])
        result["rows"][name] = row
        save_per_image(scores_path, per_image)
        write_json(args.out, result)
        print(name, {k: v for k, v in row.items() if k != "kept_16bit"}, flush=True)

    if "none" not in per_image:
        evaluate("none", pipe.transformer)
    for backend in args.backends.split(","):
        if backend in per_image:
            continue
        model, kept, rounding = _quantized(pipe.transformer, backend, pipe)
        evaluate(backend, model, {"kept_16bit": kept, "rounding": rounding})
    return 0


if __name__ == "__main__":
    sys.exit(main())
