"""The tables of docs/scale.md from results/scale.json (issue 19), and the projection of the
paper's distillation: `python scripts/scale_table.py [results/scale.json]` prints Markdown.

The projection takes the authors' SD3.5 Large recipe (SamsungLabs/HierarchicalPrune,
scripts/run_distil_sd3L.sh: 8 GPUs x batch 8 x 64,000 steps = 4,096,000 samples at 1024x1024)
and the fastest measured samples/s of each setting:
    GPU-hours = samples / samples_per_s / 3600 x gpus.
The authors publish no FLUX.1 distillation script; the same sample count is assumed there.
Eight GPUs are projected from the two-GPU row's per-GPU throughput (not measured).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PAPER_SAMPLES = 8 * 8 * 64_000
PAPER_A100_HOURS = {"sd3.5-large": 603, "flux.1-schnell": 1260}


def fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def prefix(row: dict) -> int:
    """Student blocks replayed from the teacher (hprune.distill.prefix); rows before it ran them all."""
    return row.get("shared_prefix_blocks") or 0


def distill_table(rows: list[dict], arch: str, task: str) -> list[str]:
    out = ["| GPUs | strategy | batch / GPU | compiled | checkpointing | optimizer | attention | loop | shared prefix | optimizer stream | step (s) | samples/s | peak (GiB) | MFU |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted((r for r in rows if r["arch"] == arch and r["task"] == task),
                    key=lambda r: (r["gpus"], r["strategy"], not r["compiled"], r["batch"], r["optimizer"], prefix(r),
                                   bool(r.get("overlap_optimizer")))):
        out.append(f"| {r['gpus']} | {r['strategy']} | {r['batch']} | {'yes' if r['compiled'] else 'no'} | "
                   f"{'yes' if r['gradient_checkpointing'] else 'no'} | {r['optimizer']} | {r.get('attention', '?').split()[0]} | {r.get('loop', '-')} | "
                   f"{prefix(r) or 'no'} | {'yes' if r.get('overlap_optimizer') else 'no'} | "
                   f"{fmt(r['step_s'], 3)} | "
                   f"{fmt(r['samples_per_s'])} | {fmt(r['peak_gib'], 1)} | {r['mfu']:.1%} |")
    return out


def generate_table(rows: list[dict]) -> list[str]:
    out = ["| arch | batch | compiled | attention | step (s) | decode (s) | images/s | peak (GiB) | MFU |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted((r for r in rows if r["task"] == "generate"), key=lambda r: (r["arch"], r["compiled"], r["batch"])):
        out.append(f"| {r['arch']} | {r['batch']} | {'yes' if r['compiled'] else 'no'} | {r.get('attention_backend')} | "
                   f"{fmt(r['step_s'], 3)} | {fmt(r.get('vae_decode_s'), 3)} | {fmt(r['samples_per_s'])} | "
                   f"{fmt(r['peak_gib'], 1)} | {r['mfu']:.1%} |")
    return out


def profile_table(rows: list[dict]) -> list[str]:
    out = ["| arch | task | images | GPU-hours (H200) | paper (A100 GPU-hours) | cost vs full |",
           "| --- | --- | --- | --- | --- | --- |"]
    full = {r["arch"]: r["projected_gpu_hours"] for r in rows if r["task"] == "profile" and r["gpus"] == 1}
    for r in sorted((r for r in rows if r["task"] in ("profile", "profile-fast") and r["gpus"] == 1),
                    key=lambda r: (r["arch"], r["task"])):
        paper = r.get("paper_a100_gpu_hours") if r["task"] == "profile" else None
        out.append(f"| {r['arch']} | {r['task']} | {r.get('images')} | {fmt(r['projected_gpu_hours'])} | "
                   f"{fmt(paper, 1)} | {r['projected_gpu_hours'] / full[r['arch']]:.3f} |")
    return out


def distill_projection(rows: list[dict]) -> list[str]:
    out = ["| arch | setting | GPUs | samples/s | wall (h) | GPU-hours (H200) | paper (8x A100, GPU-hours) |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for arch, paper in PAPER_A100_HOURS.items():
        pwp = [r for r in rows if r["arch"] == arch and r["task"] == "distill-pwp"]
        for gpus in (1, 2, 8):
            measured = [r for r in pwp if r["gpus"] == min(gpus, 2)]
            if not measured:
                continue
            best = max(measured, key=lambda r: r["samples_per_s"])
            rate = best["samples_per_s"] * gpus / best["gpus"]
            wall = PAPER_SAMPLES / rate / 3600
            setting = (f"PWP, {best['strategy']}, batch {best['batch']}/GPU" + (", shared prefix" if prefix(best) else "")
                       + (" (projected from 2)" if gpus == 8 else ""))
            out.append(f"| {arch} | {setting} | {gpus} | {rate:.2f} | {wall:.1f} | {wall * gpus:.0f} | {paper} |")
    return out


def main() -> None:
    rows = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else "results/scale.json").read_text())
    for title, lines in [("SD3.5 Large, PWP", distill_table(rows, "sd3.5-large", "distill-pwp")),
                         ("SD3.5 Large, whole student", distill_table(rows, "sd3.5-large", "distill-whole")),
                         ("FLUX.1 schnell, PWP", distill_table(rows, "flux.1-schnell", "distill-pwp")),
                         ("generation", generate_table(rows)), ("analysis", profile_table(rows)),
                         (f"the paper's distillation ({PAPER_SAMPLES:,} samples)", distill_projection(rows))]:
        print(f"### {title}\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
