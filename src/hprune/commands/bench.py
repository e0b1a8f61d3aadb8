"""`hprune bench`: latency and memory of a real architecture, original vs compressed.

    hprune bench --arch sd3.5-large --ratio 0.2 --quant w4fp8 --compile --out runs/bench
    hprune bench --arch flux.1-schnell --plan plan.json --quant bnb-nf4 --text-encoders

Builds the published architecture with random weights on the GPU, measures
the bf16 original and the compressed model in one process and writes
bench.json (one row per model and compile setting) and a Markdown table.
"""

from __future__ import annotations

from pathlib import Path

from hprune.bench.archs import ARCHS
from hprune.core.errors import HpruneError
from hprune.core.files import write_atomic, write_json
from hprune.quant.names import BACKEND_NAMES, BF16


def add_arguments(parser) -> None:
    parser.add_argument("--arch", required=True, choices=sorted(ARCHS), help="published architecture, built with random weights")
    plan = parser.add_mutually_exclusive_group()
    plan.add_argument("--plan", help="an hprune plan file (schema 1) for this architecture")
    plan.add_argument("--remove-last", type=int, metavar="K", help="remove the last K removable blocks")
    plan.add_argument("--ratio", type=float, help="published/late-block plan for this parameter ratio (sd3.5-large 0.2: the authors' blocks)")
    parser.add_argument("--quant", default=BF16, choices=[BF16, *BACKEND_NAMES], help="weight quantization of the compressed model")
    parser.add_argument("--group-size", type=int, default=None, help="w4fp8: 0 = one scale per row (default, the fast path) or 128")
    parser.add_argument("--compile", action="store_true", help="also measure with each block compiled (torch.compile)")
    parser.add_argument("--resolution", type=int, default=1024, help="image side in pixels")
    parser.add_argument("--steps", type=int, default=4, help="steps of the end-to-end transformer time")
    parser.add_argument("--batch", type=int, default=1, help="images per transformer call (ms/step is the whole batch's)")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps; the median is reported (>= 10)")
    parser.add_argument("--breakdown", action="store_true", help="also write kernel time by category per row")
    parser.add_argument("--cuda-graph", action="store_true", help="with --compile: also time each step replayed from one CUDA graph")
    parser.add_argument("--fp8-original", action="store_true", help="also measure the unpruned model in torchao float8 row-wise (needs torchao)")
    parser.add_argument("--text-encoders", action="store_true", help="also count the T5/CLIP encoders' memory")
    parser.add_argument("--t5-quant", default=None, choices=BACKEND_NAMES, help="with --text-encoders: quantize T5-XXL")
    parser.add_argument("--crop-pos-embed", action="store_true",
                        help="SD3: the compressed model keeps only the position embeddings up to --resolution "
                             "(what `hprune quantize --max-size` saves)")
    parser.add_argument("--attention", default="fastest", choices=("fastest", "default"),
                        help="fastest: hprune's attention kernel choice, as hprune generate and hprune.load make it "
                             "(cuDNN first on Hopper); default: torch's own order")
    parser.add_argument("--out", default=".", help="folder for bench.json and bench.md")


def variant(args):
    """The compressed model to measure beside the original (a runner Variant), or None."""
    from hprune.bench.plans import plan_from_file, published_plan, remove_last_plan
    from hprune.bench.runner import Variant

    if args.plan:
        plan, name = (lambda model: plan_from_file(args.plan, model)), Path(args.plan).stem
    elif args.remove_last:
        plan, name = (lambda model: remove_last_plan(model, args.remove_last)), f"last-{args.remove_last}-removed"
    elif args.ratio:
        plan, name = (lambda model: published_plan(args.arch, model, args.ratio)), f"pruned-{round(args.ratio * 100)}%"
    else:
        plan, name = None, "compressed"
    if plan is None and args.quant == BF16 and not args.crop_pos_embed:
        return None
    return Variant(name, plan, args.quant, args.group_size, crop_to=args.resolution if args.crop_pos_embed else None)


def run(args) -> int:
    from hprune.bench.runner import HEADER, BenchConfig, Variant, markdown_row, run as run_bench

    if args.t5_quant and not args.text_encoders:
        raise HpruneError("--t5-quant needs --text-encoders; add it or drop --t5-quant.")
    v = variant(args)
    fp8 = [Variant("original-fp8", None, "torchao-fp8")] if args.fp8_original else []
    config = BenchConfig(arch=args.arch, resolution=args.resolution, steps=args.steps, batch=args.batch, compile=args.compile, repeats=args.repeats,
                         breakdown=args.breakdown, cuda_graph=args.cuda_graph, text_encoders=args.text_encoders, t5_quant=args.t5_quant,
                         attention=args.attention, variants=fp8 + ([v] if v else []))
    rows, extras = run_bench(config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "bench.json", rows)  # each file whole or not at all
    write_atomic(out / "bench.md", HEADER + "\n" + "\n".join(markdown_row(r) for r in rows) + "\n")
    if extras.get("breakdown_ms") or extras.get("text_encoders") or extras.get("failed"):
        write_json(out / "bench_extras.json", extras)
    print(HEADER)
    print("\n".join(markdown_row(r) for r in rows))
    if extras.get("failed"):
        raise HpruneError(f"some variants failed: {extras['failed']}")
    return 0
