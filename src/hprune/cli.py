"""The `hprune` command: parses arguments, calls one command module, prints.

Each command lives in `hprune.commands.<name>` and defines `add_arguments(parser)`
and `run(args) -> int`. Modules are imported only when their command runs, so
`hprune --help` stays fast and a command that is not built yet says so. A
command module imports torch, diffusers and the modules that load them inside
`run`, never at the top: `hprune CMD --help` then takes well under a second
(tests/test_cli.py checks that building every parser loads no torch).

`main` is the one error boundary: an HpruneError, or an OSError that names a
path (a folder you cannot write, an --out that is a file), prints one line
`error: ...` and exits 1, without a traceback; so does a GPU out-of-memory, with the knobs
to turn (the command module's `out_of_memory_hint(args)`, where it has one).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from hprune import __version__
from hprune.core.errors import HpruneError, is_out_of_memory, os_error_message, out_of_memory_message

# name -> (one-line help, issue that builds it)
COMMANDS: dict[str, tuple[str, int]] = {
    "run": ("the whole job: analyse, prune, distill, quantize, evaluate, report (resumable)", 17),
    "report": ("write a run folder's report (HTML page and Markdown)", 17),
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
    "study": ("user-study web app: create a study, serve it, read the results", 20),
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


# Arguments that name something a command writes, and what they name: checked
# before the command runs. A command module whose outputs differ defines its own
# OUTPUTS (plan: --out is a file).
OUTPUTS = {"--out": "folder", "--results": "file", "--grid": "file"}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows every default; options whose default is None or off (flags)
    say in their help what happens without them."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hprune", description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"hprune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, _issue) in COMMANDS.items():
        cmd_parser = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        module = _load(name) if name == selected else None
        if module is not None:
            module.add_arguments(cmd_parser)
        elif name == selected:
            cmd_parser.add_argument("rest", nargs=argparse.REMAINDER, help="(this command is not built yet)")
    return parser


def path_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """Each text argument of the command as --help names it ("--out", "MODEL") -> the value given."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    named = {}
    for action in sub.choices[args.command]._actions:
        value = getattr(args, action.dest, None)
        if isinstance(value, str) and action.dest != "help":
            named[action.option_strings[0] if action.option_strings else action.metavar or action.dest.upper()] = value
    return named


def check_outputs(given: dict[str, str], outputs: dict[str, str]) -> None:
    """Before any work, each output path of `given` named in `outputs` (option -> "file" or
    "folder") must be writable: not under a file, not a file where a folder goes (or the
    reverse), not in a folder the user cannot write. Raises the OSError that writing
    there would raise, for `main` to print."""
    for option, kind in outputs.items():
        if option not in given:
            continue
        typed = given[option]
        path = os.path.abspath(typed)
        parent = os.path.dirname(path)
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), typed)
        if os.path.exists(path):
            if kind == "folder" and not os.path.isdir(path):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), typed)
            if kind == "file" and os.path.isdir(path):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), typed)
            if not os.access(path, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), typed)
        elif not os.access(parent, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), typed)


def fail(message: str) -> int:
    """Print `error: MESSAGE` as one line; exit status 1."""
    print("error: " + " ".join(message.splitlines()), file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    selected = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(selected)
    given: dict[str, str] = {}
    module = args = None
    try:
        args = parser.parse_args(argv)  # may raise HpruneError: --device cuda without a GPU
        if args.command is None:
            parser.print_help()
            return 0
        module = _load(args.command)
        if module is None:
            print(f"hprune {args.command}: not built yet (issue #{COMMANDS[args.command][1]}).", file=sys.stderr)
            return 2
        given = path_arguments(parser, args)
        check_outputs(given, getattr(module, "OUTPUTS", OUTPUTS))
        return int(module.run(args) or 0)
    except HpruneError as err:
        return fail(str(err))
    except BrokenPipeError:  # output piped into `head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:
        message = os_error_message(err, given)
        if message is None:  # no path named: a bug, keep the traceback
            raise
        return fail(message)
    except RuntimeError as err:  # torch.cuda.OutOfMemoryError is one
        if not is_out_of_memory(err):
            raise
        hint = getattr(module, "out_of_memory_hint", None)
        return fail(out_of_memory_message(hint(args) if hint and args is not None else None, err))
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
