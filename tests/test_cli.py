"""The CLI as a newcomer meets it (issue #22): --version, fast --help with every
default, and one line `error: ...` (exit 1, no traceback, nothing left behind)
when an output path cannot be written or --device cuda has no GPU."""

import errno
import os
import subprocess
import sys

import pytest

from hprune.cli import COMMANDS, build_parser, main
from hprune.core.errors import HpruneError, os_error_message


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny SD3 transformer folder and a plan for it (outside each test's tmp folder)."""
    from hprune.planning.plan import Plan
    from hprune.model.units import Unit
    from hprune.model.testing import tiny_sd3

    folder = tmp_path_factory.mktemp("inputs")
    model = tiny_sd3()
    model.save_pretrained(folder / "model")
    Plan.for_model(model, [Unit("joint", 1)]).save(folder / "plan.json")
    return folder


# Every command that writes an output named by an argument: (argv with OUT for that
# output, what it names). Shipped teacher, tiny model, one step, one image.
WRITERS = {
    "prune": (["prune", "{model}", "--remove-blocks", "1", "--out", "OUT"], "folder"),
    "quantize": (["quantize", "{model}", "--backend", "w4fp8", "--device", "cpu", "--out", "OUT"], "folder"),
    "distill": (["distill", "--teacher", "shapes-sd3", "--plan", "{plan}", "--data", "shapes:1", "--steps", "1",
                 "--batch-size", "1", "--out", "OUT"], "folder"),
    "generate": (["generate", "--model", "shapes-sd3", "--split", "test", "--limit", "1", "--steps", "1",
                  "--device", "cpu", "--out", "OUT"], "folder"),
    "generate --grid": (["generate", "--model", "shapes-sd3", "--split", "test", "--limit", "1", "--steps", "1",
                         "--device", "cpu", "--out", "{tmp}/gen", "--grid", "OUT"], "file"),
    "profile": (["profile", "shapes-sd3", "--n-prompts", "1", "--steps", "1", "--scope", "blocks", "--no-progress",
                 "--out", "OUT"], "folder"),
    "plan": (["plan", "{tmp}/run", "--method", "lastk", "--ratio", "0.2", "--out", "OUT"], "file"),
    "report-analysis": (["report-analysis", "{tmp}/run", "--out", "OUT"], "folder"),
    "ablate": (["ablate", "--teacher", "shapes-sd3", "--run-dir", "{tmp}/run", "--methods", "hpp", "--ratios", "0.2",
                "--per-category", "1", "--eval-steps", "1", "--data-size", "1", "--steps", "1", "--out", "OUT"], "folder"),
    "ablate --results": (["ablate", "--teacher", "shapes-sd3", "--run-dir", "{tmp}/run", "--methods", "hpp",
                          "--ratios", "0.2", "--per-category", "1", "--eval-steps", "1", "--steps", "1",
                          "--out", "{tmp}/ablate", "--results", "OUT"], "file"),
    "bench": (["bench", "--arch", "sd3.5-medium", "--out", "OUT"], "folder"),
}


def _tree(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files}


def _argv(case: str, out, tmp_path, inputs) -> list[str]:
    argv, _kind = WRITERS[case]
    fill = {"model": inputs / "model", "plan": inputs / "plan.json", "tmp": tmp_path}
    return [str(out) if a == "OUT" else a.format(**fill) for a in argv]


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.mark.parametrize("case", WRITERS)
@pytest.mark.parametrize("where", ["under a file", "in a read-only folder", "an existing file or folder"])
def test_an_output_that_cannot_be_written_is_one_error_line(case, where, tmp_path, inputs, capsys):
    kind = WRITERS[case][1]
    if where == "under a file":  # fails for root too
        (tmp_path / "blocker").write_text("a file, not a folder\n")
        out = tmp_path / "blocker" / "out"
    elif where == "in a read-only folder":
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        if os.access(tmp_path / "ro", os.W_OK):  # root writes anyway: "under a file" covers this machine
            pytest.skip("running as root: a read-only folder is writable")
        out = tmp_path / "ro" / "out"
    elif kind == "folder":
        out = tmp_path / "existing"
        out.write_text("a file where the output folder should go\n")
    else:  # a file output (plan's --out, --results, --grid): an existing file is overwritten, a folder is wrong
        out = tmp_path / "existing"
        out.mkdir()
    before = _tree(tmp_path)
    try:
        assert main(_argv(case, out, tmp_path, inputs)) == 1
    finally:
        if where == "in a read-only folder":
            (tmp_path / "ro").chmod(0o755)
    line = _one_error_line(capsys)
    assert str(out) in line and ("--out" in line or "--results" in line or "--grid" in line), line
    assert _tree(tmp_path) == before, "a failed command leaves nothing behind"


def test_run_time_os_errors_are_one_line_naming_the_output(tmp_path, monkeypatch, capsys):
    """An OSError raised inside a command (past the CLI's checks) prints one line that
    shows the --out the user typed, not the temporary sibling being written."""
    import hprune.commands.plan as plan_command

    out = tmp_path / "plan.json"
    raised = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".plan.json.tmp-123"))

    def run(args):
        raise raised

    monkeypatch.setattr(plan_command, "run", run)
    assert main(["plan", str(tmp_path), "--method", "hpp", "--ratio", "0.2", "--out", str(out)]) == 1
    assert _one_error_line(capsys) == f"error: cannot write {out}: permission denied; choose an --out you can write to."
    # An OSError that names no path is a bug: its traceback is kept.
    raised = OSError("no path")
    with pytest.raises(OSError, match="no path"):
        main(["plan", str(tmp_path), "--method", "hpp", "--ratio", "0.2", "--out", str(out)])


def test_os_error_messages(tmp_path):
    (tmp_path / "file").write_text("x")
    under = str(tmp_path / "file" / "out")
    given = {"--out": under, "MODEL": str(tmp_path / "model")}
    parent_is_file = FileExistsError(errno.EEXIST, "File exists", str(tmp_path / "file"))
    assert os_error_message(parent_is_file, given) == (
        f"cannot write {under}: {tmp_path / 'file'} is a file, not a folder; choose an --out inside a folder.")
    is_file = NotADirectoryError(errno.ENOTDIR, "Not a directory", str(tmp_path / "file"))
    assert os_error_message(is_file, {"--out": str(tmp_path / "file")}).startswith(f"{tmp_path / 'file'} is a file, not a folder")
    is_dir = IsADirectoryError(errno.EISDIR, "Is a directory", str(tmp_path / "p.json.tmp"), str(tmp_path))
    assert "is a folder, where a file was expected; choose a --results" in os_error_message(is_dir, {"--results": str(tmp_path)})
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "w.safetensors"))
    assert "no space left" in os_error_message(full, {"--out": str(tmp_path / "out")})
    assert os_error_message(FileNotFoundError(errno.ENOENT, "No such file"), given) is None


def test_write_atomic_leaves_no_temp_file_when_the_write_fails(tmp_path):
    from hprune.core.files import write_atomic

    (tmp_path / "taken").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path / "taken", "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize("command", [["generate", "--model", "shapes-sd3", "--split", "test", "--out", "OUT"],
                                     ["quantize", "{model}", "--out", "OUT"]])
def test_device_cuda_without_a_gpu_is_one_sentence_before_any_work(command, tmp_path, inputs, capsys):
    out = tmp_path / "out"
    argv = [str(out) if a == "OUT" else a.format(model=inputs / "model") for a in command]
    assert main(argv + ["--device", "cuda"]) == 1
    assert _one_error_line(capsys) == (
        "error: --device cuda was asked for but no CUDA GPU is visible; drop --device or pass --device cpu.")
    assert not out.exists()


def test_resolve_device():
    import torch

    from hprune.core.cuda import resolve_device

    assert resolve_device("auto") == resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("CPU") == "cpu"
    with pytest.raises(HpruneError, match="--device takes cpu, cuda"):
        resolve_device("gpu")


def test_every_option_has_help_and_no_default_is_written_twice():
    for name in COMMANDS:
        parser = build_parser(name)
        sub = next(a for a in parser._actions if a.dest == "command").choices[name]
        for action in sub._actions:
            if action.dest == "help":
                continue
            assert action.help, f"hprune {name} {action.option_strings or action.dest} has no help text"
            assert "(default %" not in action.help and "(default " not in action.help.replace("(default: ", ""), \
                f"hprune {name} {action.option_strings}: the formatter shows the default"
        text = sub.format_help()
        assert "usage: hprune " + name in text


def test_quantization_names_match_the_backends():
    from hprune.quant import backends
    from hprune.quant.names import BACKEND_NAMES, DEFAULT_BACKEND

    assert sorted(backends()) == sorted(BACKEND_NAMES) and DEFAULT_BACKEND in BACKEND_NAMES


def test_version_in_a_subprocess():
    from hprune import __version__

    done = subprocess.run([sys.executable, "-m", "hprune", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == f"hprune {__version__}\n"


def test_help_of_every_command_loads_no_torch_in_a_subprocess():
    """`hprune CMD --help` builds the parser without torch or diffusers (the measure of
    "fast"; wall time on a loaded 2-core box is too noisy to assert)."""
    script = (
        "import sys\n"
        "from hprune.cli import COMMANDS, main\n"
        "for name in [None, *COMMANDS]:\n"
        "    try:\n"
        "        main([name, '--help'] if name else ['--help'])\n"
        "    except SystemExit as done:\n"
        "        assert done.code == 0, (name, done.code)\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'accelerate', 'matplotlib') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name in COMMANDS:
        assert f"usage: hprune {name}" in done.stdout
    from hprune.quant.names import DEFAULT_BACKEND

    assert "(default: 64)" in done.stdout and f"(default: {DEFAULT_BACKEND})" in done.stdout
