"""`hprune plan RUN_DIR --method hpp|koala|bkscore|lastk --ratio R`: rank units into plan.json."""

from pathlib import Path

from hprune.planning.scoring import DEFAULT_R_THRES, PAPER_ALPHA, RANKERS, load_run, plan_for_run

OUTPUTS = {"--out": "file"}  # checked by the CLI before the plan is made


def add_arguments(parser):
    parser.add_argument("run_dir", help="run directory written by `hprune profile`")
    parser.add_argument("--method", required=True, choices=RANKERS,
                        help="hpp (HierarchicalPrune), koala (input-output cosine), "
                             "bkscore (drop of the text-image score), lastk (last blocks)")
    parser.add_argument("--ratio", required=True, type=float, help="fraction of transformer parameters to remove, e.g. 0.2")
    parser.add_argument("--alpha", type=float, default=None,
                        help=f"hpp position weight strength (default: the paper's, {PAPER_ALPHA})")
    parser.add_argument("--r-thres", type=float, default=DEFAULT_R_THRES,
                        help="hpp: whole blocks up to this ratio, subcomponents beyond")
    parser.add_argument("--alignment", default=None,
                        help="bkscore: metric component to rank by (default: the metric's text-image score)")
    parser.add_argument("--out", default=None, help="plan file to write (default: RUN_DIR/plan.json)")


def run(args) -> int:
    data = load_run(args.run_dir)
    overrides = {"alpha": args.alpha, "r_thres": args.r_thres}
    if args.alignment:
        overrides["alignment"] = args.alignment
    plan = plan_for_run(data, args.method, args.ratio, **overrides)
    out = plan.save(Path(args.out) if args.out else data.path / "plan.json")
    blocks = sum(u.is_block for u in plan.units)
    print(f"{args.method}: {blocks} blocks and {len(plan.units) - blocks} subcomponents, "
          f"{100 * plan.ratio_reached:.1f}% of parameters (target {100 * plan.ratio_target:.0f}%); wrote {out}")
    print("removes: " + ", ".join(u.key for u in plan.units))
    return 0
