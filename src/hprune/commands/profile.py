"""`hprune profile MODEL --metric M (--split calib | --prompts FILE) --out RUN_DIR`.

Contribution analysis; shard it over GPUs with
`accelerate launch -m hprune profile ...` (same arguments). `--fast` ranks
units by the metric's drop on a few prompts and steps plus how far each removal
moves the teacher's own images (hprune.analysis.profile_fast: one process, 6/64
of the forwards).
"""

import time

from hprune.model.units import NORM_MODES, SCOPES
from hprune.core.errors import HpruneError
from hprune.core.progress import quiet_library_bars

DTYPES = ("bfloat16", "float16", "float32")  # torch dtype names


def add_arguments(parser):
    parser.add_argument("model", help="shapes-sd3, shapes-flux, or a diffusers SD3/FLUX pipeline folder")
    parser.add_argument("--out", required=True, help="run directory (created; re-run the same command to resume)")
    parser.add_argument("--metric", default=None, help="shapes (default) | clip:/path | hps:/path | pickscore:/path")
    parser.add_argument("--fast", action="store_true",
                        help="proxy: the metric's drop plus the grid distance of each variant's images "
                             "to the full model's (8 prompts, 6 steps or the model's own when fewer)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--split", default="calib", help="calib: balanced shapes prompts from the val split")
    source.add_argument("--prompts", help="text file, one prompt a line (or JSON lines with prompt, seed)")
    parser.add_argument("--n-prompts", type=int, default=None, help="calibration prompts (default: 64, with --fast 8)")
    parser.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: shapes 8, others 4; --fast 6, or the model's own when fewer)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the teacher's, or 0)")
    parser.add_argument("--size", type=int, default=None, help="image side for diffusers pipelines (default: the pipeline's)")
    parser.add_argument("--max-sequence-length", type=int, default=None,
                        help="text tokens for diffusers pipelines (default: the pipeline's)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per generation call")
    parser.add_argument("--scope", choices=SCOPES, default="all", help="which single units to remove")
    parser.add_argument("--pairs", action="store_true", help="also every pair of subcomponents within a block")
    parser.add_argument("--norm-mode", choices=NORM_MODES, default="identity",
                        help="a removed norm's modulation: identity (shift 0, scale 0, gate 1) or its calibrated mean")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="weights and compute dtype of the model")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from(args):
    from hprune.analysis.profile import ProfileConfig
    from hprune.analysis.profile_fast import FastProfileConfig

    fast = (FastProfileConfig, "shapes", FastProfileConfig.n_prompts, FastProfileConfig.steps)
    cls, metric, n_prompts, steps = fast if args.fast else (ProfileConfig, "shapes", 64, None)
    return cls(
        metric=args.metric or metric, split=None if args.prompts else args.split, prompts=args.prompts,
        n_prompts=n_prompts if args.n_prompts is None else args.n_prompts, seed=args.seed,
        steps=steps if args.steps is None else args.steps, guidance=args.guidance,
        size=args.size, max_sequence_length=args.max_sequence_length, batch_size=args.batch_size, scope=args.scope,
        pairs=args.pairs, norm_mode=args.norm_mode)


def run(args) -> int:
    import torch
    from accelerate import PartialState

    from hprune.analysis.profile import profile
    from hprune.analysis.profile_fast import profile_fast

    config = config_from(args)
    state = PartialState(cpu=not torch.cuda.is_available())
    if args.fast and state.num_processes > 1:
        raise HpruneError("--fast runs in one process; call `hprune profile --fast` without accelerate launch.")
    from hprune.folders import load_pipeline

    if args.no_progress:
        quiet_library_bars()
    pipe = load_pipeline(args.model, torch_dtype=getattr(torch, args.dtype), device=state.device)
    start = time.perf_counter()
    rows = (profile_fast if args.fast else profile)(pipe, config, args.out, model_name=args.model,
                                                    progress=not args.no_progress)
    if state.is_main_process:
        seconds = sum(r["seconds"] for r in rows)
        what = "fast generation and scoring" if args.fast else "generation and scoring"
        print(f"{len(rows)} variants in {args.out}/contribution.jsonl: {seconds:.1f} s of {what} "
              f"({seconds / max(len(rows), 1):.3f} s a variant); this call took {time.perf_counter() - start:.1f} s")
    return 0
