"""`hprune study serve`: the app under a real uvicorn server.

The study file and admin token reach each worker process through the environment,
so that `--workers N` runs N copies of the same app on one port.
"""

from __future__ import annotations

import os
import secrets

TOKEN_ENV = "HPRUNE_STUDY_ADMIN_TOKEN"
STUDY_ENV = "HPRUNE_STUDY_FILE"


def admin_token() -> tuple[str, bool]:
    """(token, whether it was generated here) — from HPRUNE_STUDY_ADMIN_TOKEN, else a fresh random one."""
    given = os.environ.get(TOKEN_ENV)
    return (given, False) if given else (secrets.token_urlsafe(24), True)


def app_from_env():
    from hprune.study.app import create_app

    return create_app(os.environ[STUDY_ENV], os.environ[TOKEN_ENV])


def serve(study: str, host: str, port: int, workers: int = 1) -> None:
    import uvicorn

    from hprune.study.app import create_app

    token, generated = admin_token()
    create_app(study, token)  # fail here, in one sentence, before the server starts
    os.environ[STUDY_ENV], os.environ[TOKEN_ENV] = os.path.abspath(study), token
    shown = token if generated else f"from ${TOKEN_ENV}"
    print(f"serving {study} at http://{host}:{port}/  (results: http://{host}:{port}/admin, admin token: {shown})",
          flush=True)
    uvicorn.run("hprune.study.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, timeout_graceful_shutdown=5)
