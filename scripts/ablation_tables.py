"""The ablation tables (docs/results.md) rebuilt from the committed per-job files, on any machine.

    python scripts/ablation_tables.py results/tables/shapes-sd3 --results results/ablation-shapes-sd3.json \
        --pair hpp+pwp,hpp+distill --pair hpp+pwp+sgdistill,hpp+pwp

Reads the folder `hprune ablate --out` wrote (its config.json, each (row, seed) job's JSON and
per-image .npz, the teacher's scores), prints the markdown table (mean over seeds, Student-t 95%
interval, removed share, and the paired bootstrap of hpp+pwp against the best baseline) and, with
--results, writes the rows as JSON. No GPU, no training: the same numbers `hprune ablate` printed.
"""

import argparse
import sys

from hprune.core.errors import HpruneError
from hprune.core.files import write_json
from hprune.experiments.ablate import compare_methods, markdown_table, paired_lines, table_from_jobs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="an ablation folder (hprune ablate --out), e.g. results/tables/shapes-sd3")
    parser.add_argument("--results", help="also write the table rows here as a JSON list")
    parser.add_argument("--pair", action="append", default=[], metavar="OURS,OTHER",
                        help="also print the paired bootstrap of OURS against OTHER at each ratio, "
                             "e.g. hpp+pwp,hpp+distill (PWP's own effect); repeatable")
    args = parser.parse_args(argv)
    try:
        teacher, rows = table_from_jobs(args.folder)
    except HpruneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(markdown_table(teacher, rows))
    for pair in args.pair:
        ours, other = pair.split(",")
        print(f"\n{ours} vs {other}: paired bootstrap over prompts; diff = degradation of {ours} minus {other}'s.\n")
        print("\n".join(paired_lines(compare_methods(args.folder, rows, ours, other))))
    if args.results:
        write_json(args.results, rows)
        print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
