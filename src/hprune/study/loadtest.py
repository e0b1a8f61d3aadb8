"""Load test of `hprune study serve`: many simulated participants at once, the server
killed with SIGKILL and restarted once in the middle.

    python -m hprune.study.loadtest --participants 200 --duration 180 --out runs/study-loadtest.json

Each participant walks the real pages (GET /study, its images, a think time, POST the
answer) and starts afresh when done. A rating counts as acknowledged when its POST got
the 303 that follows the commit. At the end the study file is read directly: every
acknowledged rating must be there with its values. Latency percentiles are over the
requests not in flight during the restart window (kill .. first healthy response after
it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

TOKEN = "loadtest-admin-token-0123456789"
COOKIE = "hprune_study"


def synthetic_folders(root: Path, methods: int, prompts: int) -> list[Path]:
    """`hprune generate`-style folders of 64x64 noise PNGs (same prompts and seeds in each)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folders = []
    for m in range(methods):
        folder = root / f"method-{m}"
        folder.mkdir(parents=True)
        lines = []
        for i in range(prompts):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
            lines.append(json.dumps({"index": i, "prompt": f"prompt {i}", "seed": i, "path": f"{i:05d}.png"}))
        (folder / "generations.jsonl").write_text("\n".join(lines) + "\n")
        folders.append(folder)
    return folders


class Server:
    """`hprune study serve` in a subprocess, killable with SIGKILL and restartable on the same port."""

    def __init__(self, study: Path, port: int):
        self.study, self.port, self.proc = study, port, None
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        env = {**os.environ, "HPRUNE_STUDY_ADMIN_TOKEN": TOKEN}
        self.proc = subprocess.Popen([sys.executable, "-m", "hprune", "study", "serve", str(self.study),
                                      "--port", str(self.port)], env=env, stdout=subprocess.DEVNULL)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


class Connection:
    """A minimal HTTP/1.1 keep-alive client, one per simulated participant. httpx costs ~5 ms of CPU per
    request, which on a small machine would measure the load generator rather than the server."""

    stale_retries = 0  # class-wide: summed over every participant's connection

    def __init__(self, port: int):
        self.port, self.reader, self.writer = port, None, None

    async def request(self, method: str, path: str, cookie: str | None = None, form: dict | None = None):
        """(status, headers, body); raises OSError (or asyncio.IncompleteReadError) when the server is gone.
        A kept-alive connection that fails before any answer (its server was killed while it idled) is
        retried once on a fresh one, as browsers do; `stale_retries` counts those."""
        body = urlencode(form).encode() if form is not None else b""
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        head += ["Content-Type: application/x-www-form-urlencoded"] if form is not None else []
        head += [f"Cookie: {COOKIE}={cookie}"] if cookie else []
        message = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        reused = self.writer is not None
        try:
            return await self._exchange(message)
        except (OSError, asyncio.IncompleteReadError) as err:
            if not reused or getattr(err, "partial", b""):
                raise
        Connection.stale_retries += 1
        return await self._exchange(message)

    async def _exchange(self, message: bytes):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            self.writer.write(message)
            await self.writer.drain()
            lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                key, _, value = line.partition(":")
                headers.setdefault(key.strip().lower(), []).append(value.strip())
            data = await self.reader.readexactly(int(headers.get("content-length", ["0"])[0]))
        except BaseException:
            self.close()
            raise
        return int(lines[0].split()[1]), headers, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Recorder:
    def __init__(self):
        self.requests = []  # (start, seconds, kind, status or error name)
        self.acknowledged = {}  # (participant token, image id) -> (ta, iq)

    async def call(self, conn: Connection, method: str, path: str, kind: str, **kwargs):
        start = time.monotonic()
        try:
            response = await conn.request(method, path, **kwargs)
        except (OSError, asyncio.IncompleteReadError) as err:
            self.requests.append((start, time.monotonic() - start, kind, type(err).__name__))
            return None
        self.requests.append((start, time.monotonic() - start, kind, response[0]))
        return response


def cookie_of(headers: dict) -> str | None:
    for value in headers.get("set-cookie", []):
        if value.startswith(COOKIE + "="):
            return value.split(";", 1)[0].split("=", 1)[1]
    return None


async def participant(port: int, rec: Recorder, stop: asyncio.Event, think: tuple[float, float], rng: random.Random):
    conn = Connection(port)
    token = None
    await asyncio.sleep(rng.uniform(0, think[1]))  # people arrive spread out, not all in one instant
    while not stop.is_set():
        if token is None:
            response = await rec.call(conn, "POST", "/start", "start", form={})
            token = cookie_of(response[1]) if response is not None and response[0] == 303 else None
            if token is None:
                await asyncio.sleep(0.2)
                continue
        page = await rec.call(conn, "GET", "/study", "page", cookie=token)
        if page is None or page[0] != 200:
            await asyncio.sleep(0.2)
            continue
        html = page[2].decode()
        if 'id="done"' in html:
            token = None
            continue
        step = re.search(r'name="step" value="(\d+)"', html).group(1)
        images = re.findall(r'src="/img/([\w-]+)\.png"', html)
        for image in images:
            await rec.call(conn, "GET", f"/img/{image}.png", "image", cookie=token)
        await asyncio.sleep(rng.uniform(*think))
        if 'action="/pick"' in html:
            await rec.call(conn, "POST", "/pick", "pick", cookie=token, form={"step": step, "image": rng.choice(images)})
            continue
        ta, iq = rng.randint(0, 5), rng.randint(0, 5)
        answer = await rec.call(conn, "POST", "/rate", "rate", cookie=token, form={
            "step": step, "image": images[0], "text_alignment": ta, "image_quality": iq})
        if answer is not None and answer[0] == 303:
            rec.acknowledged[(token, images[0])] = (ta, iq)
    conn.close()


async def wait_up(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    conn = Connection(port)
    while time.monotonic() < deadline:
        try:
            if (await conn.request("GET", "/healthz"))[0] == 200:
                conn.close()
                return
        except (OSError, asyncio.IncompleteReadError):
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError("the study server did not come up")


async def drive(server: Server, participants: int, duration: float, kill_at: float, think) -> dict:
    rec = Recorder()
    stop = asyncio.Event()
    await wait_up(server.port)
    began = time.monotonic()
    tasks = [asyncio.create_task(participant(server.port, rec, stop, think, random.Random(i)))
             for i in range(participants)]
    await asyncio.sleep(kill_at * duration)
    killed = time.monotonic()
    server.kill()
    server.start()
    await wait_up(server.port)
    back = time.monotonic()
    await asyncio.sleep(max(0.0, began + duration - time.monotonic()))
    stop.set()
    await asyncio.gather(*tasks)
    ended = time.monotonic()
    return {"rec": rec, "began": began, "killed": killed, "back": back, "ended": ended}


def percentiles(seconds: list[float]) -> dict:
    if not seconds:
        return {}
    ordered = sorted(seconds)
    ms = {f"p{round(100 * q)}_ms": 1000 * ordered[math.ceil(q * len(ordered)) - 1]  # nearest rank
          for q in (0.5, 0.95, 0.99)}
    return {"count": len(ordered), **ms, "max_ms": 1000 * ordered[-1]}


def stored_ratings(study: Path) -> dict:
    conn = sqlite3.connect(study)
    try:
        rows = conn.execute("SELECT p.token, r.image_id, r.text_alignment, r.image_quality "
                            "FROM ratings r JOIN participants p ON p.id = r.participant_id").fetchall()
    finally:
        conn.close()
    return {(token, image): (ta, iq) for token, image, ta, iq in rows}


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return out


def report(run: dict, study: Path, args) -> dict:
    rec = run["rec"]
    # In the window: any request in flight at some moment between the kill and the first healthy answer.
    outside = [r for r in rec.requests if r[0] > run["back"] or r[0] + r[1] < run["killed"]]
    ok = [r for r in outside if isinstance(r[3], int) and r[3] < 500]
    stored = stored_ratings(study)
    lost = [key for key, values in rec.acknowledged.items() if stored.get(key) != values]
    statuses = _count(str(r[3]) for r in rec.requests)
    failed = [str(r[3]) for r in outside if not isinstance(r[3], int) or r[3] >= 500]
    return {
        "command": "python -m hprune.study.loadtest " + " ".join(sys.argv[1:]),
        "participants": args.participants, "duration_s": round(run["ended"] - run["began"], 1),
        "think_s": args.think, "requests": len(rec.requests),
        "requests_per_s": round(len(rec.requests) / (run["ended"] - run["began"]), 1),
        "restart": {"killed_at_s": round(run["killed"] - run["began"], 1),
                    "down_s": round(run["back"] - run["killed"], 2),
                    "requests_in_window": len(rec.requests) - len(outside)},
        "latency_outside_restart": percentiles([r[1] for r in ok]),
        "latency_by_kind": {k: percentiles([r[1] for r in ok if r[2] == k]) for k in ("page", "image", "pick", "rate")},
        "statuses": statuses,
        "errors_outside_restart": len(failed), "errors_outside_restart_by_type": _count(failed),
        "stale_keepalive_retries": Connection.stale_retries,
        "ratings_acknowledged": len(rec.acknowledged), "ratings_stored": len(stored), "ratings_lost": len(lost),
        "p95_under_200ms": percentiles([r[1] for r in ok]).get("p95_ms", 1e9) < 200,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="folders", nargs="+", default=None,
                        help="`hprune generate` folders to build the study from (default: synthetic noise images)")
    parser.add_argument("--participants", type=int, default=200, help="simulated participants at once")
    parser.add_argument("--duration", type=float, default=180, help="seconds of load")
    parser.add_argument("--kill-at", type=float, default=0.5, help="when to kill -9 the server, as a share of --duration")
    parser.add_argument("--think", type=float, nargs=2, default=(1.0, 3.0), help="think time range per page, seconds")
    parser.add_argument("--port", type=int, default=8765, help="server port")
    parser.add_argument("--out", default="runs/study-loadtest.json", help="where to save the JSON figures")
    args = parser.parse_args(argv)
    from hprune.study.importer import create_study

    with tempfile.TemporaryDirectory() as tmp:
        folders = args.folders or synthetic_folders(Path(tmp) / "gen", methods=3, prompts=32)
        study = Path(tmp) / "study.db"
        create_study(folders, study)
        server = Server(study, args.port)
        server.start()
        try:
            run = asyncio.run(drive(server, args.participants, args.duration, args.kill_at, tuple(args.think)))
        finally:
            server.kill()
        figures = report(run, study, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))
    return 0 if figures["ratings_lost"] == 0 and figures["p95_under_200ms"] else 1


if __name__ == "__main__":
    sys.exit(main())
