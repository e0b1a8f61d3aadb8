"""`hprune study create` and `hprune study results`: folders in, one study file out,
and mismatched folders refused in one sentence."""

import sqlite3

import pytest

from hprune.cli import main
from hprune.core.errors import HpruneError
from hprune.study.importer import create_study

from .studyfiles import PROMPTS, write_generation


def test_create_stores_every_image_under_an_opaque_id(gen_dirs, tmp_path):
    summary = create_study(gen_dirs, tmp_path / "s.db")
    assert summary == {"methods": ["original", "pruned"], "prompts": 3, "images": 6, "reference": "original"}
    conn = sqlite3.connect(tmp_path / "s.db")
    rows = conn.execute("SELECT i.id, i.png, m.name FROM images i JOIN methods m ON m.id = i.method_id").fetchall()
    assert len(rows) == 6 and all(png.startswith(b"\x89PNG") for _, png, _ in rows)
    assert all(len(image_id) >= 16 and name not in image_id for image_id, _, name in rows)
    assert (gen_dirs[0] / "00000.png").read_bytes() in [png for _, png, name in rows if name == "original"]
    assert [r[0] for r in conn.execute("SELECT prompt FROM prompts ORDER BY position")] == PROMPTS
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("change", ["seeds", "prompts", "count"])
def test_folders_with_other_prompts_or_seeds_are_refused(tmp_path, change):
    first = write_generation(tmp_path / "a", (1, 2, 3))
    kwargs = {"seeds": {"seeds": [0, 1, 7]}, "prompts": {"prompts": [*PROMPTS[:2], "a cat"]},
              "count": {"prompts": PROMPTS[:2]}}[change]
    second = write_generation(tmp_path / "b", (3, 2, 1), **kwargs)
    with pytest.raises(HpruneError, match="differ in prompts or seeds") as err:
        create_study([first, second], tmp_path / "s.db")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "s.db").exists()


def test_names_reference_and_bad_inputs(gen_dirs, tmp_path):
    summary = create_study(gen_dirs, tmp_path / "s.db", names=["A", "B"], reference="B")
    assert summary["methods"] == ["A", "B"] and summary["reference"] == "B"
    problems = [
        ({"folders": gen_dirs[:1]}, "at least two"),
        ({"names": ["A"]}, "one name per folder"),
        ({"names": ["A", "A"]}, "distinct"),
        ({"reference": "C"}, "not one of the methods"),
        ({"folders": [gen_dirs[0], tmp_path]}, "no generations.jsonl"),
        ({"out": tmp_path / "s.db"}, "already exists"),
    ]
    for kwargs, message in problems:
        args = {"folders": gen_dirs, "out": tmp_path / "new.db", **kwargs}
        with pytest.raises(HpruneError, match=message):
            create_study(args.pop("folders"), args.pop("out"), **args)


def test_cli_create_then_results(gen_dirs, tmp_path, capsys):
    out = tmp_path / "study.db"
    assert main(["study", "create", "--from", *map(str, gen_dirs), "--out", str(out)]) == 0
    assert "3 prompt sets x 2 methods" in capsys.readouterr().out
    assert main(["study", "results", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "0 participants" in printed and "original" in printed and "pruned" in printed
    other = write_generation(tmp_path / "other", (0, 0, 0), seeds=[5, 6, 7])
    assert main(["study", "create", "--from", str(gen_dirs[0]), str(other), "--out", str(tmp_path / "x.db")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "differ in prompts or seeds" in err and len(err.splitlines()) == 1
    assert main(["study", "results", str(tmp_path / "missing.db")]) == 1


def test_study_help_loads_neither_the_web_stack_nor_torch():
    import subprocess
    import sys

    script = ("import sys\nfrom hprune.cli import main\n"
              "for argv in (['study', '--help'], ['study', 'serve', '--help']):\n"
              "    try:\n        main(argv)\n    except SystemExit as done:\n        assert done.code == 0\n"
              "print(sorted(m for m in ('torch', 'fastapi', 'uvicorn', 'scipy') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "[]", done.stderr


def test_a_real_generate_folder_imports(tmp_path, capsys):
    """The contract with `hprune generate`: its folder, as written, makes a study (one step, two images)."""
    import shutil

    out = tmp_path / "teacher"
    assert main(["generate", "--model", "shapes-sd3", "--split", "val", "--limit", "2", "--steps", "1",
                 "--batch-size", "2", "--device", "cpu", "--out", str(out)]) == 0
    shutil.copytree(out, tmp_path / "copy")
    summary = create_study([out, tmp_path / "copy"], tmp_path / "s.db")
    assert summary["prompts"] == 2 and summary["methods"] == ["teacher", "copy"]
