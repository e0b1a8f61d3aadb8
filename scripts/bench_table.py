"""The whole benchmark table in one GPU process per architecture (issue 8).

    PYTHONPATH=src python scripts/bench_table.py --arch sd3.5-large --out results/run
    PYTHONPATH=src python scripts/bench_table.py --arch sd3.5-large --ratios 0.2,0.3 --quants w4fp8:0 \
        --fp8-original --no-eager --cuda-graph --breakdown --out results/run   # issue 18's table

For each arch: the bf16 original, the 20% and 30% block plans in bf16, and
each plan with each 4-bit backend; eager and compiled. Writes bench.json
(rows), extras.json (kernel breakdowns, text encoders) and table.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hprune.bench.plans import published_plan
from hprune.bench.runner import HEADER, BenchConfig, Variant, markdown_row, run


def variants(arch: str, ratios: list[float], quants: list[str], fp8_original: bool = False) -> list[Variant]:
    out = []
    for ratio in ratios:
        plan = (lambda r: lambda model: published_plan(arch, model, r))(ratio)
        for quant in quants:
            backend, _, group = quant.partition(":")
            out.append(Variant(f"pruned-{round(ratio * 100)}%", plan, backend, int(group) if group else None))
    # last, so that a run cut short by its time limit still has the compressed rows
    return out + ([Variant("original-fp8", None, "torchao-fp8")] if fp8_original else [])


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", action="append", required=True)
    p.add_argument("--ratios", default="0.2,0.3")
    p.add_argument("--quants", default="bf16,bnb-nf4,torchao-int4,torchao-fp8,w4fp8")
    p.add_argument("--no-eager", action="store_true")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--breakdown", action="store_true")
    p.add_argument("--cuda-graph", action="store_true", help="also time each compiled model replayed from a CUDA graph")
    p.add_argument("--fp8-original", action="store_true", help="also the unpruned model in torchao float8 row-wise (W8A8)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--batch", type=int, default=1, help="images per transformer call")
    p.add_argument("--text-encoders", action="store_true")
    p.add_argument("--attention", default="fastest", choices=("fastest", "default"))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, extras = [], {}
    for arch in args.arch:
        t0 = time.time()
        cfg = BenchConfig(arch=arch, batch=args.batch, compile=not args.no_compile, eager=not args.no_eager, breakdown=args.breakdown, cuda_graph=args.cuda_graph,
                          repeats=args.repeats, text_encoders=args.text_encoders, t5_quant="bnb-nf4" if args.text_encoders else None, attention=args.attention,
                          variants=variants(arch, [float(r) for r in args.ratios.split(",") if r], [q for q in args.quants.split(",") if q], args.fp8_original))
        def save(partial, e, arch=arch):
            (out / "bench.json").write_text(json.dumps(rows + partial, indent=1))
            (out / "extras.json").write_text(json.dumps({**extras, arch: e}, indent=1))

        r, e = run(cfg, log=lambda s: print(s, flush=True), on_row=save)
        rows += r
        extras[arch] = e
        print(f"# {arch}: {time.time() - t0:.0f} s", flush=True)
        (out / "bench.json").write_text(json.dumps(rows, indent=1))
        (out / "extras.json").write_text(json.dumps(extras, indent=1))
    (out / "table.md").write_text(HEADER + "\n" + "\n".join(markdown_row(r) for r in rows) + "\n")
    print(HEADER)
    print("\n".join(markdown_row(r) for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
