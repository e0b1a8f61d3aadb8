"""Smoke check before a tables run: both shapes teachers draw through the w4fp8 backend on this GPU.

Prints each teacher's val scores (8 images per category) in bf16 and with w4fp8 weights; exits 1
if quantizing or drawing fails, so a tables run can fall back to no 4-bit twins instead of losing
every job at its end.
    PYTHONPATH=src python3 scripts/check_w4fp8_shapes.py
"""

import json
import sys

from hprune.experiments.ablate import AblateConfig, _quantized, score_transformer
from hprune.toy.pipeline import load_pipeline


def main() -> int:
    cfg = AblateConfig(split="val", per_category=8)
    for teacher in ("shapes-sd3", "shapes-flux"):
        pipe = load_pipeline(teacher, device="cuda")
        for name, model in (("bf16", pipe.transformer), ("w4fp8", _quantized(pipe.transformer, "w4fp8")[0])):
            s = score_transformer(pipe, model, cfg)
            print(json.dumps({"teacher": teacher, "weights": name, "semantic": s["semantic"], "quality": s["quality"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
