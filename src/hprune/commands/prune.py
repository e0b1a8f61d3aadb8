"""`hprune prune MODEL --plan plan.json --out DIR` (or `--remove-blocks`, `--remove`).

Units are named by their index in the original model, also when MODEL was
pruned before: the new plan is composed with the old one (their union)."""

from pathlib import Path

from hprune.model import get_adapter
from hprune.model.units import Unit
from hprune.core.errors import HpruneError
from hprune.planning.plan import Plan


def add_arguments(parser):
    parser.add_argument("model", help="diffusers transformer folder or pipeline folder")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--plan", help="plan.json made by `hprune plan`")
    how.add_argument("--remove-blocks", help="comma-separated block indices, e.g. 30,31,35 "
                     "(FLUX single blocks as s0,s1,...)")
    how.add_argument("--remove", help="comma-separated unit names, e.g. joint.3.attn,joint.7,single.5.mlp_proj")
    parser.add_argument("--norm-means", help="norm_means.pt of the profile run (plans with norm_mode mean); "
                        "default: the one beside the plan file, if any")
    parser.add_argument("--out", required=True, help="output folder (must not exist)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def blocks_from_text(text: str) -> list[Unit]:
    units = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        kind, num = ("single", item[1:]) if item.startswith("s") else ("joint", item)
        if not num.isdigit():
            raise HpruneError(f"--remove-blocks takes block indices like 30,31,35 (s3 for FLUX single block 3), got '{item}'.")
        units.append(Unit(kind, int(num)))
    if not units:
        raise HpruneError("--remove-blocks lists no block; give indices like 30,31,35.")
    return units


def units_from_text(text: str) -> list[Unit]:
    units = [Unit.parse(item) for item in filter(None, (t.strip() for t in text.split(",")))]
    if not units:
        raise HpruneError("--remove lists no unit; give names like joint.3.attn,joint.7,single.5.mlp_proj.")
    return units


def _norm_means(plan: Plan, args):
    """Calibrated modulations for plans that remove norms in 'mean' mode."""
    if plan.norm_mode != "mean" or not any(u.is_norm for u in plan.units):
        return None
    path = Path(args.norm_means) if args.norm_means else Path(args.plan).parent / "norm_means.pt"
    if not path.is_file():
        raise HpruneError("this plan removes norms in 'mean' mode, which needs the calibrated means: pass "
                          "--norm-means RUN_DIR/norm_means.pt from `hprune profile --norm-mode mean`.")
    import torch

    return torch.load(path, weights_only=True)


def run(args) -> int:
    from hprune.model.compile import block_shapes, shapes_line
    from hprune.folders import load, pipeline_folder, save
    from hprune.core.atomic import check_out
    from hprune.prune.surgery import prune_

    check_out(Path(args.out), args.overwrite)
    model = load(args.model)
    adapter = get_adapter(model)
    if args.plan:
        plan = Plan.load(args.plan)
    else:
        units = blocks_from_text(args.remove_blocks) if args.remove_blocks else units_from_text(args.remove)
        plan = Plan.for_model(model, units)
    norm_means = _norm_means(plan, args)
    before = adapter.total_params(model)
    prune_(model, plan, norm_means)
    after = adapter.total_params(model)
    # A pipeline in (a folder or a shipped teacher's name) gives a pipeline out.
    out = save(model, Path(args.out), source=pipeline_folder(args.model), overwrite=args.overwrite)
    print(f"removed {len(plan.units)} units: {before:,} -> {after:,} parameters "
          f"({100 * (1 - after / before):.1f}% fewer); saved to {out}")
    print(shapes_line(block_shapes(model)))
    return 0
