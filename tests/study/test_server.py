"""`hprune study serve` as a real uvicorn server: every acknowledged answer survives
a `kill -9`, and the participant resumes at the same step after a restart."""

import os
import re
import sqlite3
import subprocess
import sys

import httpx

from hprune.study.web import PARTICIPANT_COOKIE

from .studyfiles import ADMIN_TOKEN, start_server, wait_until_up


def test_acknowledged_answers_survive_kill_9_and_restart(live_server):
    url, proc, study_file = live_server
    client = httpx.Client(base_url=url)
    assert client.post("/start").status_code == 303
    token = client.cookies[PARTICIPANT_COOKIE]
    acknowledged = 0
    for _ in range(5):
        html = client.get("/study").text
        step = re.search(r'name="step" value="(\d+)"', html).group(1)
        image = re.search(r'src="/img/([\w-]+)\.png"', html).group(1)
        if 'action="/pick"' in html:
            response = client.post("/pick", data={"step": step, "image": image})
        else:
            response = client.post("/rate", data={"step": step, "image": image, "text_alignment": 5,
                                                  "image_quality": 1})
            acknowledged += response.status_code == 303
        assert response.status_code == 303
    proc.kill()  # SIGKILL: no shutdown hook runs
    proc.wait(timeout=10)
    conn = sqlite3.connect(study_file)
    assert conn.execute("SELECT COUNT(*) FROM ratings WHERE text_alignment = 5").fetchone()[0] == acknowledged == 3
    conn.close()

    port = int(url.rsplit(":", 1)[1])
    again = start_server(study_file, port)
    try:
        wait_until_up(url, again)
        resumed = httpx.Client(base_url=url, cookies={PARTICIPANT_COOKIE: token})
        assert "Step 6 of 9" in resumed.get("/study").text
        results = resumed.get("/admin/results.json", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
        assert results["ratings"] == 3
        assert resumed.get("/admin/results.json").status_code == 401
    finally:
        again.kill()
        again.wait(timeout=10)


def test_serve_prints_a_fresh_admin_token_and_refuses_a_missing_study(study_file, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HPRUNE_STUDY_ADMIN_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "hprune", "study", "serve", str(study_file), "--port", "0"],
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert re.search(r"admin token: [\w-]{32}\)", line), line
    done = subprocess.run([sys.executable, "-m", "hprune", "study", "serve", str(tmp_path / "none.db")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "does not exist" in done.stderr and len(done.stderr.splitlines()) == 1
