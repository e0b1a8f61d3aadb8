import json
import subprocess
import sys

from hprune.cli import main
from hprune.model.testing import tiny_flux, tiny_sd35_medium


def test_inspect_table_and_json(tmp_path, capsys):
    tiny_sd35_medium().save_pretrained(tmp_path / "m")
    assert main(["inspect", str(tmp_path / "m")]) == 0
    text = capsys.readouterr().out
    assert "attn2" in text and "total transformer parameters" in text
    assert main(["inspect", str(tmp_path / "m"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"unit", "kind", "index", "sub", "params", "share"} <= data["units"][0].keys()


def test_inspect_flux(tmp_path, capsys):
    tiny_flux().save_pretrained(tmp_path / "f")
    assert main(["inspect", str(tmp_path / "f"), "--json"]) == 0
    kinds = {u["kind"] for u in json.loads(capsys.readouterr().out)["units"]}
    assert kinds == {"joint", "single"}


def test_bad_path_is_one_sentence_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "hprune", "inspect", str(tmp_path / "nope")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_help_lists_commands_and_unbuilt_ones_say_so(capsys):
    result = subprocess.run([sys.executable, "-m", "hprune", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "inspect" in result.stdout and "prune" in result.stdout
