"""`hprune report-analysis RUN_DIR`: heatmaps, pair matrices, top-k per method."""

from pathlib import Path

from hprune.core.errors import HpruneError
from hprune.planning.plan import check_ratio
from hprune.planning.scoring import load_run


def add_arguments(parser):
    parser.add_argument("run_dir", help="run directory written by `hprune profile`")
    parser.add_argument("--out", default=None, help="folder for the PNGs and index.html (default: RUN_DIR/report)")
    parser.add_argument("--top-k", type=int, default=10, help="units listed per method")
    parser.add_argument("--ratios", default="0.2,0.3", help="ratios at which to compare the methods' plans")
    parser.add_argument("--alpha", type=float, default=None, help="hpp alpha (default: the paper's for the family)")


def run(args) -> int:
    from hprune.report.analysis import report_analysis  # matplotlib

    data = load_run(args.run_dir)
    try:
        ratios = [check_ratio(float(r), "--ratios") for r in args.ratios.split(",") if r.strip()]
    except ValueError:
        raise HpruneError(f"--ratios takes fractions separated by commas, like 0.2,0.3; got '{args.ratios}'.") from None
    out = Path(args.out) if args.out else data.path / "report"
    print(report_analysis(data, out, args.top_k, ratios, args.alpha))
    return 0
