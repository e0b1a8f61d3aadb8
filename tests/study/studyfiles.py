"""Building blocks of the study tests: fake `hprune generate` folders and a server in a subprocess."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

PROMPTS = ["a red circle", "two blue squares", "a green triangle left of a red circle"]
ADMIN_TOKEN = "test-admin-token-0123456789"


def write_generation(folder: Path, colour: tuple[int, int, int], prompts=PROMPTS, seeds=None, model="m") -> Path:
    """A folder as `hprune generate` writes it: PNGs, generations.jsonl, generation.json."""
    folder.mkdir(parents=True)
    lines = []
    for i, prompt in enumerate(prompts):
        Image.new("RGB", (16, 16), colour).save(folder / f"{i:05d}.png")
        lines.append(json.dumps({"index": i, "prompt": prompt, "seed": (seeds or range(len(prompts)))[i],
                                 "path": f"{i:05d}.png"}))
    (folder / "generations.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "generation.json").write_text(json.dumps({"model": model, "steps": 1}))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(study_file: Path, port: int) -> subprocess.Popen:
    """`hprune study serve` in a subprocess (the real CLI and uvicorn), the admin token from the environment."""
    env = {**os.environ, "HPRUNE_STUDY_ADMIN_TOKEN": ADMIN_TOKEN}
    return subprocess.Popen([sys.executable, "-m", "hprune", "study", "serve", str(study_file), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"server at {url} did not come up in {timeout} s")
