"""The load-test script on a tiny scale: it drives the real server, survives its own
kill -9 and restart, and reports no lost rating."""

import json

from hprune.study.loadtest import main, percentiles

from .studyfiles import free_port


def test_percentiles_are_nearest_rank():
    assert percentiles([i / 1000 for i in range(1, 101)]) == {
        "count": 100, "p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "max_ms": 100.0}


def test_a_short_run_with_a_restart_loses_nothing(tmp_path, gen_dirs):
    from concurrent.futures import ThreadPoolExecutor

    out = tmp_path / "loadtest.json"
    argv = ["--from", *map(str, gen_dirs), "--participants", "5", "--duration", "6", "--think", "0.05", "0.2",
            "--port", str(free_port()), "--out", str(out)]
    with ThreadPoolExecutor(1) as pool:  # its own event loop: Playwright's sync API may hold this thread's
        pool.submit(main, argv).result()
    figures = json.loads(out.read_text())
    assert figures["ratings_acknowledged"] > 5 and figures["ratings_lost"] == 0
    assert figures["ratings_stored"] >= figures["ratings_acknowledged"]
    assert figures["restart"]["down_s"] > 0 and figures["statuses"]["303"] > 10
