"""The study's web app: participant pages (`participant.py`) and admin results (`admin.py`)
on one FastAPI app, with its SQLite connections, templates and error pages.

Participant pages never link to or name the admin pages. Every write commits before
its response goes out (see db.py); a refused submission stores nothing.
"""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from hprune.core.errors import HpruneError
from hprune.study import admin, db, flow, participant, web

HERE = Path(__file__).parent


class Connections:
    """One SQLite connection per worker thread (a connection is only ever used by the thread that opened it)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.local = threading.local()

    def get(self):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = db.connect(self.path)
        return conn


def create_app(study: str | Path, admin_token: str) -> FastAPI:
    if not Path(study).is_file():
        raise HpruneError(f"{study} does not exist; create it with `hprune study create --from GEN_DIR... --out {study}`.")
    if len(admin_token) < 16:
        raise HpruneError("the admin token must be at least 16 characters; set a longer HPRUNE_STUDY_ADMIN_TOKEN.")
    app = FastAPI(title="hprune study", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.conns = Connections(study)
    app.state.admin_token = admin_token
    app.state.pages = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape())
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(web.SecurityHeaders)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(flow.Refused, _refused)
    app.include_router(participant.router)
    app.include_router(admin.router)
    return app


async def _http_error(request: Request, err: StarletteHTTPException):
    if err.status_code == 401:
        return web.render(request, "admin_login.html", 401, error=err.detail)
    return web.render(request, "error.html", err.status_code, message=err.detail, status=err.status_code)


async def _refused(request: Request, err: flow.Refused):
    return web.render(request, "error.html", err.status, message=str(err), status=err.status)
