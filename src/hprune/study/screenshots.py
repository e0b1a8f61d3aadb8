"""The screenshots in docs/study.md: a real server, a participant clicking in headless
Chromium, then simulated participants (seeded random ratings, clearly not people) so
that the results page has error bars to show.

    python -m hprune.study.screenshots --from runs/gen-original runs/gen-hpp --out docs/images
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKEN = "screenshots-admin-token-0123456789"


def simulate(url: str, study: Path, people: int, centres: list[float], rng: random.Random) -> None:
    """`people` simulated participants through every step; the images of the study's i-th method get ratings
    around centres[i] (the simulator reads the study file to know; pages never tell)."""
    import sqlite3

    import httpx

    conn = sqlite3.connect(study)
    centre_of = {image: centres[method - 1] for image, method in conn.execute("SELECT id, method_id FROM images")}
    conn.close()
    for _ in range(people):
        client = httpx.Client(base_url=url)
        client.post("/start")
        while 'id="done"' not in (html := client.get("/study").text):
            step = re.search(r'name="step" value="(\d+)"', html).group(1)
            images = re.findall(r'src="/img/([\w-]+)\.png"', html)
            if 'action="/pick"' in html:
                client.post("/pick", data={"step": step, "image": rng.choice(images)})
                continue
            ta, iq = (max(0, min(5, round(rng.gauss(centre_of[images[0]], 1)))) for _ in range(2))
            client.post("/rate", data={"step": step, "image": images[0], "text_alignment": ta, "image_quality": iq})


def click_through(page, url: str, out: Path) -> None:
    page.goto(url)
    page.screenshot(path=str(out / "study-intro.png"))
    page.locator("#start").click()
    page.screenshot(path=str(out / "study-pick.png"))
    while page.locator("#done").count() == 0:
        if page.locator(".choice").count():
            page.locator(".choice").first.click()
        else:
            page.locator("#text_alignment input[value='4']").check()
            page.locator("#image_quality input[value='3']").check()
            if not (out / "study-rate.png").exists():
                page.screenshot(path=str(out / "study-rate.png"))
        page.locator("#next").click()
    page.screenshot(path=str(out / "study-done.png"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="folders", nargs="+", required=True, help="`hprune generate` folders")
    parser.add_argument("--names", nargs="+", default=None, help="method names")
    parser.add_argument("--out", default="docs/images", help="folder for study-*.png")
    parser.add_argument("--port", type=int, default=8766, help="server port")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from hprune.study.importer import create_study

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("study-*.png"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "study.db"
        create_study(args.folders, study, args.names, per_participant=2)
        env = {**os.environ, "HPRUNE_STUDY_ADMIN_TOKEN": TOKEN}
        server = subprocess.Popen([sys.executable, "-m", "hprune", "study", "serve", str(study), "--port",
                                   str(args.port)], env=env, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{args.port}"
        try:
            time.sleep(4)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 900, "height": 720})
                click_through(page, url, out)
                simulate(url, study, 20, [3.8, 3.0, 2.5, 2.0][:len(args.folders)], random.Random(0))
                admin = browser.new_page(viewport={"width": 1100, "height": 900})
                admin.goto(url + "/admin")
                admin.screenshot(path=str(out / "study-login.png"))
                admin.locator("#token").fill(TOKEN)
                admin.locator("#login").click()
                admin.screenshot(path=str(out / "study-results.png"), full_page=True)
                browser.close()
        finally:
            server.kill()
    print("\n".join(str(p) for p in sorted(out.glob("study-*.png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
