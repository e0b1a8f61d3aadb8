"""A participant's whole study in real headless Chromium, by clicking, against
`hprune study serve` in a subprocess; then the admin reads the results.
(docs/study.md's screenshots come from `python -m hprune.study.screenshots`.)
"""

import re
import sqlite3

from .studyfiles import ADMIN_TOKEN, PROMPTS

STEPS = len(PROMPTS) * 3


def step_text(page) -> str:
    return page.locator("#progress-text").inner_text()


def pick_best(page) -> None:
    assert page.locator("#next").is_disabled()
    page.locator(".choice").first.click()
    page.locator("#next").click()


def rate(page, ta: int, iq: int) -> None:
    before = step_text(page)
    page.locator(f"#text_alignment input[value='{ta}']").check()
    assert page.locator("#next").is_disabled()
    page.evaluate("document.querySelector('#next').disabled = false")  # even forced, the form is not sent
    page.locator("#next").click()
    page.wait_for_timeout(500)
    assert step_text(page) == before and page.url.endswith("/study")
    page.locator(f"#image_quality input[value='{iq}']").check()
    page.locator("#next").click()


def watched(page):
    """Collect console and page errors, as the browser_page fixture does for its own page."""
    page.set_default_timeout(20_000)  # a loaded 2-core box can be slow; only a failure waits this long
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    return page


def ratings_in(study_file) -> list:
    conn = sqlite3.connect(study_file)
    try:
        return conn.execute("SELECT text_alignment, image_quality FROM ratings").fetchall()
    finally:
        conn.close()


def test_participant_flow_then_admin_results(live_server, browser_page, chromium):
    url, _, study_file = live_server
    page = browser_page
    page.set_default_timeout(20_000)  # a loaded 2-core box can be slow; only a failure waits this long
    page.set_viewport_size({"width": 820, "height": 640})
    page.goto(url)
    assert "Text Alignment" in page.content() and "Image Quality" in page.content()
    page.locator("#start").click()
    assert step_text(page) == f"Step 1 of {STEPS}" and page.locator(".choice img").count() == 2
    sources = page.eval_on_selector_all("img", "els => els.map(e => e.src)")
    assert all(name not in page.content() + " ".join(sources) for name in ("original", "pruned"))
    pick_best(page)
    assert step_text(page) == f"Step 2 of {STEPS}" and page.locator("img.single").count() == 1
    rate(page, 4, 3)
    rate(page, 2, 5)
    at = step_text(page)
    assert at == f"Step 4 of {STEPS}"

    # The participant closes the browser and comes back: the cookie brings them to the same step.
    state = page.context.storage_state()
    page.close()
    context = chromium.new_context(storage_state=state)
    page = watched(context.new_page())
    page.goto(url)
    assert page.locator("#start").inner_text() == "Continue where you stopped"
    page.locator("#start").click()
    assert step_text(page) == at
    while page.locator("#done").count() == 0:
        pick_best(page) if page.locator(".choice").count() else rate(page, 5, 4)
    assert len(ratings_in(study_file)) == 2 * len(PROMPTS)

    # A finished participant cannot submit again, neither by going back nor by replaying a form.
    page.go_back()
    assert page.locator("form.step-form").count() == 0
    replay = page.request.post(url + "/rate", form={"step": "1", "image": "x", "text_alignment": "0",
                                                    "image_quality": "0"}, max_redirects=0)
    assert replay.status == 409 and "already finished" in replay.text()
    assert len(ratings_in(study_file)) == 2 * len(PROMPTS)
    context.close()

    admin = watched(chromium.new_page())
    assert admin.goto(url + "/admin").status == 401 and "original" not in admin.content()
    admin.locator("#token").fill(ADMIN_TOKEN)
    admin.locator("#login").click()
    table = admin.locator("#results").inner_text()
    assert "original" in table and "pruned" in table
    assert admin.locator("svg.chart rect").count() >= 4 and admin.locator("svg .error-bar").count() == 4
    assert re.search(r"1 participants \(1 finished\), 6 ratings", admin.locator("#summary").inner_text())
    csv = admin.request.get(url + "/admin/ratings.csv").text().splitlines()
    assert len(csv) == 1 + 2 * len(PROMPTS)
    admin.close()
    assert browser_page.console_errors == [] and page.console_errors == []
    assert all("401" in e for e in admin.console_errors), admin.console_errors  # the sign-in page's own status
