"""HTTP edges of the study app: bounded form bodies, the admin token check, the
headers every response carries, and the per-request helpers the routes share
(connection, thread pool, templates)."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

MAX_BODY = 4096  # bytes; a study form is a few short fields
MAX_FIELDS = 8
ADMIN_COOKIE = "hprune_study_admin"
PARTICIPANT_COOKIE = "hprune_study"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def conn_of(request: Request):
    """The calling thread's connection; sync routes run in FastAPI's thread pool, so this never blocks the loop."""
    return request.app.state.conns.get()


async def in_thread(request: Request, fn, *args):
    """fn(connection, *args) in the thread pool, for async routes (those that read a bounded body first)."""
    conns = request.app.state.conns
    return await run_in_threadpool(lambda: fn(conns.get(), *args))


def render(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    html = request.app.state.pages.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


class SecurityHeaders:
    """Pure ASGI middleware adding HEADERS to every response (cheaper than BaseHTTPMiddleware)."""

    def __init__(self, app):
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def read_form(request: Request) -> dict[str, str]:
    """The url-encoded form of a POST, each field once; 413 past MAX_BODY bytes (read no further),
    415 for another content type, 400 for a malformed or repeated field."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise HTTPException(413, f"request body over {MAX_BODY} bytes; a study form is far smaller.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HTTPException(413, f"request body over {MAX_BODY} bytes; a study form is far smaller.")
    if body and request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the form as application/x-www-form-urlencoded.")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
                          max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "malformed form body.")
    if any(len(values) != 1 for values in fields.values()):
        raise HTTPException(400, "each form field may appear once.")
    return {key: values[0] for key, values in fields.items()}


def int_field(form: dict[str, str], name: str) -> int:
    value = form.get(name, "")
    if not value.lstrip("-").isdigit() or len(value) > 6:
        raise HTTPException(422, f"{name} must be an integer, got {value[:20]!r}.")
    return int(value)


def text_field(form: dict[str, str], name: str) -> str:
    value = form.get(name, "")
    if not value or len(value) > 64:
        raise HTTPException(422, f"{name} is missing or too long.")
    return value


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so the response time does not reveal how much of a guess was right."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def admin_token_of(request: Request) -> str | None:
    """The token a request presents: `Authorization: Bearer ...` or the admin cookie set by the login form."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.cookies.get(ADMIN_COOKIE)
