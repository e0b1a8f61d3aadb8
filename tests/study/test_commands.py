"""`hprune study serve/results` on files that are not studies: one line, exit 1, no server."""

import pytest

from hprune.cli import main


@pytest.mark.parametrize("command", [["results"], ["serve", "--port", "8765"]])
def test_a_file_that_is_not_a_study_is_refused(command, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    assert main(["study", command[0], str(text), *command[1:]]) == 1
    err = capsys.readouterr().err.strip()
    assert "is not a study file" in err and "\n" not in err


def test_a_missing_study_and_a_port_out_of_range(tmp_path, capsys):
    assert main(["study", "results", str(tmp_path / "none.db")]) == 1
    assert "does not exist" in capsys.readouterr().err
    from hprune.study import db

    study = tmp_path / "s.db"
    conn = db.connect(study)
    db.create_schema(conn)
    conn.close()
    assert main(["study", "serve", str(study), "--port", "99999"]) == 1
    assert "--port must be between 0 (any free port) and 65535" in capsys.readouterr().err
