"""The participant's routes: introduction, the current step, answers, images, resume link."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hprune.study import db, flow, web
from hprune.study.web import conn_of, in_thread, render

router = APIRouter()
COOKIE_AGE = 60 * 60 * 24 * 90  # a participant may come back within three months


def token_of(request: Request) -> str:
    return request.cookies.get(web.PARTICIPANT_COOKIE, "")


def to_study(token: str | None = None) -> RedirectResponse:
    """303 to the current step, setting the participant's cookie when given a token."""
    response = RedirectResponse("/study", status_code=303)
    if token:
        response.set_cookie(web.PARTICIPANT_COOKIE, token, max_age=COOKIE_AGE, httponly=True, samesite="lax")
    return response


@router.get("/", response_class=HTMLResponse)
def intro(request: Request):
    token = token_of(request)
    return render(request, "intro.html", known=bool(token) and db.participant(conn_of(request), token) is not None)


@router.post("/start")
async def start(request: Request):
    await web.read_form(request)
    token = token_of(request)
    if token and await in_thread(request, db.participant, token) is not None:
        return to_study()
    return to_study(await in_thread(request, flow.start))


@router.get("/p/{token}")
def resume(request: Request, token: str):
    if len(token) > 64 or db.participant(conn_of(request), token) is None:
        raise HTTPException(404, "this resume link is not valid; start the study from its first page.")
    return to_study(token)


@router.get("/study", response_class=HTMLResponse)
def study(request: Request):
    token, conn = token_of(request), conn_of(request)
    if not token or db.participant(conn, token) is None:
        return RedirectResponse("/", status_code=303)
    step = flow.current_step(conn, token)
    if step is None:
        return render(request, "done.html")
    prompt = db.prompt(conn, step.prompt_id)["prompt"]
    page = "pick.html" if step.kind == "pick" else "rate.html"
    return render(request, page, step=step, prompt=prompt, resume=f"/p/{token}")


@router.post("/pick")
async def pick(request: Request):
    form = await web.read_form(request)
    step, image = web.int_field(form, "step"), web.text_field(form, "image")
    await in_thread(request, flow.submit_pick, token_of(request), step, image)
    return to_study()


@router.post("/rate")
async def rate(request: Request):
    form = await web.read_form(request)
    step, ta, iq = (web.int_field(form, f) for f in ("step", "text_alignment", "image_quality"))
    image = web.text_field(form, "image")
    await in_thread(request, flow.submit_rating, token_of(request), step, image, ta, iq)
    return to_study()


@router.get("/img/{image_id}.png")
def image(request: Request, image_id: str):
    png = db.image_png(conn_of(request), image_id) if len(image_id) <= 64 else None
    if png is None:
        raise HTTPException(404, "no such image.")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})


@router.get("/favicon.ico")
def favicon():
    return Response(status_code=204)


@router.get("/healthz")
def health():
    return {"ok": True}
