"""The ablation tables (docs/results.md) rebuilt from the committed per-job files, on any machine.

    python scripts/ablation_tables.py results/tables/shapes-sd3 --results results/ablation-shapes-sd3.json \
        --pair hpp+pwp,hpp+distill --pair hpp+pwp+sgdistill,hpp+pwp

Reads the folder `hprune ablate --out` wrote (its config.json, each (row, seed) job's JSON and
per-image .npz, the teacher's scores), prints the markdown table (mean over seeds, Student-t 95%
interval, removed share, and the paired bootstrap of hpp+pwp against the best baseline) and, with
--results, writes the rows as JSON. No GPU, no training: the same numbers `hprune ablate` printed.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from hprune.core.errors import HpruneError
from hprune.core.files import write_json
from hprune.experiments.ablate import RowSpec, compare_methods, markdown_table, paired_lines, sample_sheet, table_from_jobs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="an ablation folder (hprune ablate --out), e.g. results/tables/shapes-sd3")
    parser.add_argument("--results", help="also write the table rows here as a JSON list")
    parser.add_argument("--samples", metavar="PNG", help="also stack the rows' sample strips (first seed, table order, "
                        "teacher first) into this PNG, their names in a .txt beside it")
    parser.add_argument("--pair", action="append", default=[], metavar="OURS,OTHER",
                        help="also print the paired bootstrap of OURS against OTHER at each ratio, "
                             "e.g. hpp+pwp,hpp+distill (PWP's own effect); repeatable")
    args = parser.parse_args(argv)
    try:
        pairs = check_args(args)
        teacher, rows = table_from_jobs(args.folder)
        blocks = [markdown_table(teacher, rows)] + [paired_block(args.folder, rows, *pair) for pair in pairs]
    except HpruneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ValueError, KeyError, TypeError, OSError) as err:  # a damaged job file, config.json or .npz
        print(f"error: {args.folder} holds a damaged file ({type(err).__name__}: {err}); restore the folder "
              f"(git checkout -- {args.folder}) or re-run `hprune ablate` into it.", file=sys.stderr)
        return 1
    print("\n".join(blocks))
    if args.results:
        write_json(args.results, rows)
        print(f"wrote {args.results}")
    if args.samples:
        names = ["teacher"] + [RowSpec(r["method"], r["ratio"], r["seeds"][0]).variant(r["quant"]) for r in rows]
        print(f"wrote {sample_sheet(Path(args.folder), names, Path(args.samples))}")
    return 0


def check_args(args) -> list[tuple[str, str]]:
    """The --pair values as (ours, other), and --results writable; HpruneError before any output."""
    config = Path(args.folder) / "config.json"
    try:
        methods = json.loads(config.read_text())["methods"]
    except (OSError, ValueError, KeyError, TypeError):
        raise HpruneError(f"{args.folder} has no readable config.json: it is not an ablation folder written by "
                          "`hprune ablate`.") from None
    pairs = []
    for text in args.pair:
        names = [n.strip() for n in text.split(",")]
        if len(names) != 2 or len(set(names)) != 2 or not all(names):
            raise HpruneError(f"--pair takes two different methods separated by a comma, like hpp+pwp,hpp+distill; "
                              f"got '{text}'.")
        unknown = [n for n in names if n not in methods]
        if unknown:
            raise HpruneError(f"--pair {text}: {', '.join(unknown)} is not a method of this table "
                              f"({', '.join(methods)}).")
        pairs.append((names[0], names[1]))
    if args.results:
        parent = Path(args.results).resolve().parent
        if Path(args.results).is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
            raise HpruneError(f"--results {args.results}: cannot write a file there (a folder, or its folder does "
                              "not exist or is read-only); pass a file path in a writable folder.")
    return pairs


def paired_block(folder: str, rows: list[dict], ours: str, other: str) -> str:
    pairs = compare_methods(folder, rows, ours, other)
    ratios = sorted({r["ratio"] for r in rows if r["method"] == ours} & {r["ratio"] for r in rows if r["method"] == other})
    lost = [f"{r:g}" for r in ratios if r not in {p["ratio"] for p in pairs}]
    note = f"\nNo per-image scores for ratio {', '.join(lost)}: left out.\n" if lost else ""
    return (f"\n{ours} vs {other}: paired bootstrap over prompts; diff = degradation of {ours} minus {other}'s.\n\n"
            + "\n".join(paired_lines(pairs)) + note)


if __name__ == "__main__":
    sys.exit(main())
