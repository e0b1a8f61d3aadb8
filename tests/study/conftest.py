import pytest

from .studyfiles import free_port, start_server, wait_until_up, write_generation


@pytest.fixture
def gen_dirs(tmp_path):
    return [write_generation(tmp_path / "original", (200, 0, 0)), write_generation(tmp_path / "pruned", (0, 0, 200))]


@pytest.fixture
def study_file(tmp_path, gen_dirs):
    from hprune.study.importer import create_study

    create_study(gen_dirs, tmp_path / "study.db")
    return tmp_path / "study.db"


@pytest.fixture
def live_server(study_file):
    """`hprune study serve` on a free port: (base url, server process, study file)."""
    port = free_port()
    proc = start_server(study_file, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc)
        yield url, proc, study_file
    finally:
        proc.kill()
        proc.wait(timeout=10)
