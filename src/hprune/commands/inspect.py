"""`hprune inspect MODEL_PATH`: print the unit table."""

import json

from hprune.model import get_adapter
from hprune.analysis.unit_table import format_table, unit_table


def add_arguments(parser):
    parser.add_argument("model", help="diffusers transformer folder or pipeline folder")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")


def run(args) -> int:
    from hprune.folders import load
    from hprune.model.compile import block_shapes, shapes_line

    model = load(args.model)
    rows = unit_table(model)
    total = get_adapter(model).total_params(model)
    if args.json:
        print(json.dumps({"total_params": total, "block_shapes": block_shapes(model), "units": rows}, indent=1))
    else:
        print(format_table(rows, total))
        print(shapes_line(block_shapes(model)))
    return 0
