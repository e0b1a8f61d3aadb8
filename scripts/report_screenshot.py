"""Screenshot a run's report as headless Chromium shows it (full page): docs/images/report.png
is the H200 run's in results/run/shapes-sd3-full-h200.

    .venv/bin/python scripts/report_screenshot.py [RUN_DIR] [OUT_PNG]
"""

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent


def main(run: Path, out: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto((run / "report.html").resolve().as_uri())
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    run = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "results" / "run" / "shapes-sd3-full-h200"
    main(run, Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "docs" / "images" / "report.png")
