"""The study's HTTP API through FastAPI's TestClient: the participant flow, every
refusal stores nothing, and the admin results need the token."""

import re
import sqlite3

import pytest
from fastapi.testclient import TestClient

from hprune.study import web
from hprune.study.app import create_app

from .studyfiles import ADMIN_TOKEN, PROMPTS

STEPS = len(PROMPTS) * 3  # per prompt: one pick, two ratings


@pytest.fixture
def client(study_file):
    return TestClient(create_app(study_file, ADMIN_TOKEN))


def new_participant(app) -> TestClient:
    person = TestClient(app)
    assert person.post("/start", follow_redirects=False).status_code == 303
    return person


def page(person: TestClient) -> dict:
    """The current step as the page shows it: kind, step index, image ids (and the raw html)."""
    html = person.get("/study").text
    step = re.search(r'name="step" value="(\d+)"', html)
    images = re.findall(r'src="/img/([\w-]+)\.png"', html)
    kind = "pick" if 'action="/pick"' in html else "rate" if 'action="/rate"' in html else "done"
    return {"kind": kind, "step": int(step.group(1)) if step else None, "images": images, "html": html}


def answer(person: TestClient, current: dict, ta: int = 4, iq: int = 3, image: str | None = None, step=None):
    step = current["step"] if step is None else step
    if current["kind"] == "pick":
        return person.post("/pick", data={"step": step, "image": image or current["images"][0]},
                           follow_redirects=False)
    return person.post("/rate", data={"step": step, "image": image or current["images"][0],
                                      "text_alignment": ta, "image_quality": iq}, follow_redirects=False)


def stored(study_file) -> tuple[list, list]:
    conn = sqlite3.connect(study_file)
    try:
        return (conn.execute("SELECT * FROM ratings ORDER BY created_at").fetchall(),
                conn.execute("SELECT * FROM picks").fetchall())
    finally:
        conn.close()


def test_a_participant_goes_through_every_step_and_the_results_count_them(client, study_file):
    person = new_participant(client.app)
    kinds = []
    for i in range(STEPS):
        current = page(person)
        assert current["step"] == i and f"Step {i + 1} of {STEPS}" in current["html"]
        kinds.append(current["kind"])
        assert answer(person, current, ta=i % 6).status_code == 303
    assert kinds == ["pick", "rate", "rate"] * len(PROMPTS)
    assert page(person)["kind"] == "done" and "Thank you" in person.get("/study").text
    ratings, picks = stored(study_file)
    assert len(ratings) == 2 * len(PROMPTS) and len(picks) == len(PROMPTS)
    results = client.get("/admin/results.json", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert results["participants"] == 1 and results["finished"] == 1 and results["ratings"] == 6
    assert sum(m["scores"]["text_alignment"]["n"] for m in results["methods"]) == 6
    assert sum(m["best_pick"]["value"] for m in results["methods"]) == pytest.approx(1.0)


def test_orders_are_random_per_participant_and_stable_on_reload(client):
    grids = set()
    for _ in range(12):
        person = new_participant(client.app)
        first = page(person)
        assert page(person)["images"] == first["images"]  # a reload shows the same page
        grids.add((re.search(r'<q id="prompt">(.*?)</q>', first["html"]).group(1), tuple(first["images"])))
    assert len(grids) > 1


def test_refusals_store_nothing(client, study_file):
    person = new_participant(client.app)
    pick = page(person)
    cases = [
        (answer(person, pick, image="not-an-image"), 422),
        (person.post("/pick", data={"step": "x", "image": pick["images"][0]}), 422),
        (person.post("/pick", content=b"step=0&image=" + b"a" * 100_000,
                     headers={"content-type": "application/x-www-form-urlencoded"}), 413),
        (person.post("/pick", content=(b"a" * 1000 for _ in range(10)),
                     headers={"content-type": "application/x-www-form-urlencoded"}), 413),  # chunked, no length
        (person.post("/pick", json={"step": 0, "image": pick["images"][0]}), 415),
        (person.post("/pick", content=b"step=0&step=0&image=x",
                     headers={"content-type": "application/x-www-form-urlencoded"}), 400),
        (TestClient(client.app).post("/pick", data={"step": 0, "image": pick["images"][0]}), 403),
        (answer(person, pick, step=1), 409),  # a step not open yet
    ]
    for response, status in cases:
        assert response.status_code == status, (response.status_code, response.text[-300:])
    assert stored(study_file) == ([], [])
    assert answer(person, pick).status_code == 303
    rate = page(person)
    sibling = next(i for i in pick["images"] if i != rate["images"][0])  # same prompt, another method
    conn = sqlite3.connect(study_file)
    elsewhere = conn.execute("SELECT i.id FROM images i JOIN images j ON j.id = ? WHERE i.prompt_id != j.prompt_id",
                             (rate["images"][0],)).fetchone()[0]  # another prompt's image
    conn.close()
    for response, status in [(answer(person, rate, ta=7), 422), (answer(person, rate, iq=-1), 422),
                             (answer(person, pick), 409), (answer(person, rate, image=sibling), 422),
                             (answer(person, {**pick, "step": rate["step"]}), 422),  # a pick where a rating is due
                             (answer(person, rate, image=elsewhere), 422), (answer(person, rate, step=0), 409)]:
        assert response.status_code == status, response.text
    assert "text_alignment must be an integer from 0 to 5, got 7" in answer(person, rate, ta=7).text
    assert len(stored(study_file)[0]) == 0 and len(stored(study_file)[1]) == 1


def test_a_replayed_or_late_submission_is_refused_and_the_first_answer_kept(client, study_file):
    person = new_participant(client.app)
    answer(person, page(person))
    rate = page(person)
    assert answer(person, rate, ta=5, iq=5).status_code == 303
    replay = answer(person, rate, ta=0, iq=0)
    assert replay.status_code == 409 and "already answered" in replay.text
    (rating,) = stored(study_file)[0]
    assert rating[2:4] == (5, 5)
    while (current := page(person))["kind"] != "done":
        answer(person, current)
    late = answer(person, rate, ta=1, iq=1)
    assert late.status_code == 409 and "already finished" in late.text
    assert len(stored(study_file)[0]) == 2 * len(PROMPTS)


def test_resume_link_and_cookie_return_to_the_same_step(client):
    person = new_participant(client.app)
    answer(person, page(person))
    here = page(person)
    token = person.cookies[web.PARTICIPANT_COOKIE]
    again = TestClient(client.app)
    assert again.get(f"/p/{token}", follow_redirects=False).status_code == 303
    assert page(again)["step"] == here["step"] == 1 and page(again)["images"] == here["images"]
    assert "Continue where you stopped" in person.get("/").text
    assert TestClient(client.app).get("/p/forged-token").status_code == 404


def test_admin_needs_the_token_and_participant_pages_hide_methods(client, study_file):
    anonymous = TestClient(client.app)
    person = new_participant(client.app)
    answer(person, page(person))
    for path in ["/admin", "/admin/results.json", "/admin/ratings.csv", "/admin/picks.csv"]:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
            response = anonymous.get(path, headers=headers)
            assert response.status_code == 401
            assert "original" not in response.text and "pruned" not in response.text
        assert anonymous.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
    assert anonymous.post("/admin/login", data={"token": "nope"}).status_code == 401
    assert anonymous.post("/admin/login", data={"token": ADMIN_TOKEN}).status_code == 200  # followed to /admin
    assert "<svg" in anonymous.get("/admin").text
    for path in ["/", "/study", "/static/study.js", f"/img/{page(person)['images'][0]}.png"]:
        body = person.get(path).content
        for secret in (b"admin", b"original", b"pruned"):
            assert secret not in body.lower(), (path, secret)
    assert person.get(f"/img/{page(person)['images'][0]}.png").headers["content-type"] == "image/png"


def test_admin_token_is_compared_in_constant_time(client, monkeypatch):
    calls = []
    real = web.hmac.compare_digest
    monkeypatch.setattr(web.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    assert TestClient(client.app).get("/admin", headers={"Authorization": "Bearer x"}).status_code == 401
    assert calls


def test_csv_export_holds_every_rating(client):
    people = [new_participant(client.app) for _ in range(2)]
    for person in people:
        for i in range(4):
            answer(person, page(person), ta=i, iq=5 - i)
    csv = client.get("/admin/ratings.csv", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text.splitlines()
    assert csv[0] == "participant,prompt_index,prompt,seed,method,image_id,text_alignment,image_quality,created_at"
    assert len(csv) == 1 + 2 * 2  # per person: 4 steps = pick, rate, rate, pick
    assert sorted(line.split(",")[6:8] == ["1", "4"] or line.split(",")[6:8] == ["2", "3"] for line in csv[1:])


def test_security_headers_on_every_response(client):
    response = client.get("/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_two_tabs_answering_the_same_step_at_once_store_one_answer(study_file):
    """Threads race on one step through the app's own thread pool: one 303, the rest 409."""
    from concurrent.futures import ThreadPoolExecutor

    app = create_app(study_file, ADMIN_TOKEN)
    person = new_participant(app)
    answer(person, page(person))
    rate = page(person)
    tabs = [TestClient(app, cookies=dict(person.cookies)) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(lambda tab: answer(tab, rate, ta=2).status_code, tabs))
    assert statuses == [303] + [409] * 5
    assert len(stored(study_file)[0]) == 1
