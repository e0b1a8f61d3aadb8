"""The `hprune` command: parses arguments, calls one command module, prints.

Each command lives in `hprune.commands.<name>` and defines `add_arguments(parser)`
and `run(args) -> int`. Modules are imported only when their command runs, so
`hprune --help` stays fast and a command that is not built yet says so.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from hprune.errors import HpruneError

# name -> (one-line help, issue that builds it)
COMMANDS: dict[str, tuple[str, int]] = {
    "inspect": ("print the table of removable units of a model", 4),
    "prune": ("apply a pruning plan and save the pruned model", 4),
    "generate": ("generate images from prompts with a (pruned) model", 5),
    "eval": ("score generated images with ShapesEval", 5),
    "profile": ("contribution analysis: remove each unit, measure the drop", 6),
    "plan": ("rank units (hpp, koala, bkscore, lastk) into a pruning plan", 6),
    "report-analysis": ("draw heatmaps of a contribution analysis", 6),
    "distill": ("distill a pruned student from its teacher (PWP, SGDistill)", 7),
    "ablate": ("run the method ablation tables on the shapes testbed", 7),
    "quantize": ("4-bit post-training weight quantization", 8),
    "bench": ("latency and memory of real architectures, original vs compressed", 8),
}


def _module_name(command: str) -> str:
    return "hprune.commands." + command.replace("-", "_")


def _load(command: str):
    try:
        return importlib.import_module(_module_name(command))
    except ModuleNotFoundError as err:
        if err.name != _module_name(command):
            raise
        return None


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hprune", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, _issue) in COMMANDS.items():
        cmd_parser = sub.add_parser(name, help=help_text, description=help_text)
        module = _load(name) if name == selected else None
        if module is not None:
            module.add_arguments(cmd_parser)
        elif name == selected:
            cmd_parser.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    selected = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(selected).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 0
    module = _load(args.command)
    if module is None:
        print(f"hprune {args.command}: not built yet (issue #{COMMANDS[args.command][1]}).", file=sys.stderr)
        return 2
    try:
        return int(module.run(args) or 0)
    except HpruneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
