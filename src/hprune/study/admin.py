"""The admin's routes: results page, JSON, CSV exports. Every one needs the admin token
(`Authorization: Bearer` or the cookie the sign-in form sets); without it, 401 and the
sign-in form only."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from hprune.core.errors import HpruneError
from hprune.study import db, web
from hprune.study.chart import bar_chart
from hprune.study.results import PICK_COLUMNS, RATING_COLUMNS, summarise, table_rows, to_csv
from hprune.study.web import conn_of, render

router = APIRouter(prefix="/admin")


def require_admin(request: Request) -> None:
    if not web.token_matches(web.admin_token_of(request), request.app.state.admin_token):
        raise HTTPException(401, "the admin token is missing or wrong.")


@router.post("/login")
async def login(request: Request):
    form = await web.read_form(request)
    if not web.token_matches(form.get("token"), request.app.state.admin_token):
        raise HTTPException(401, "wrong admin token.")
    response = RedirectResponse("/admin", status_code=303)
    response.set_cookie(web.ADMIN_COOKIE, form["token"], httponly=True, samesite="strict", path="/admin")
    return response


@router.get("", response_class=HTMLResponse)
def results_page(request: Request, reference: str | None = None):
    require_admin(request)
    results = _summary(request, reference)
    return render(request, "admin_results.html", results=results, table=table_rows(results),
                  chart=bar_chart(results), methods=[m.method for m in results.methods])


@router.get("/results.json")
def results_json(request: Request, reference: str | None = None):
    require_admin(request)
    return JSONResponse(as_json(_summary(request, reference)), headers={"Cache-Control": "no-store"})


@router.get("/ratings.csv")
def ratings_csv(request: Request):
    require_admin(request)
    return _csv(to_csv(db.rating_rows(conn_of(request)), RATING_COLUMNS), "ratings.csv")


@router.get("/picks.csv")
def picks_csv(request: Request):
    require_admin(request)
    return _csv(to_csv(db.pick_rows(conn_of(request)), PICK_COLUMNS), "picks.csv")


def as_json(results) -> dict:
    def est(e):
        return {"value": e.value, "low": e.low, "high": e.high, "n": e.n}

    return {"reference": results.reference, "participants": results.participants, "finished": results.finished,
            "ratings": results.ratings,
            "methods": [{"method": m.method, "scores": {d: est(s) for d, s in m.scores.items()},
                         "best_pick": est(m.best_pick), "drop_percent": m.drops} for m in results.methods]}


def _summary(request: Request, reference: str | None):
    try:
        return summarise(conn_of(request), reference or None)
    except HpruneError as err:
        raise HTTPException(422, str(err))


def _csv(text: str, name: str) -> Response:
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
