"""The study's numbers against cases small enough to work out by hand."""

import math
import sqlite3

import pytest

from hprune.study import db
from hprune.study.results import format_table, summarise
from hprune.study.stats import mos, relative_drop, share


def test_mos_is_the_mean_with_a_student_t_interval():
    e = mos([1, 2, 3])  # mean 2, sample sd 1, t(0.975, 2) = 4.302653
    assert e.value == 2 and e.n == 3
    assert e.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    e = mos([4, 4, 5, 5])  # mean 4.5, sd 0.57735, t(0.975, 3) = 3.182446
    assert e.low == pytest.approx(4.5 - 3.182446 * 0.57735027 / 2, rel=1e-6)
    assert mos([3, 3, 3]).half_width == 0
    assert mos([4]).value == 4 and mos([4]).low is None
    assert mos([]).value is None


def test_share_uses_the_wilson_interval():
    e = share(1, 4)  # Wilson 95%: 0.0456 .. 0.6994
    assert e.value == 0.25 and e.low == pytest.approx(0.04558, abs=1e-4) and e.high == pytest.approx(0.69936, abs=1e-4)
    assert share(0, 10).low == 0 and share(0, 10).high == pytest.approx(1.96 ** 2 / (10 + 1.96 ** 2), rel=1e-3)
    assert share(10, 10).high == pytest.approx(1)
    assert share(0, 0).value is None


def test_relative_drop_in_percent_of_the_reference():
    assert relative_drop(4.0, 3.0) == 25.0
    assert relative_drop(4.0, 5.0) == -25.0
    assert relative_drop(0.0, 1.0) is None and relative_drop(None, 1.0) is None


def test_summarise_a_hand_filled_study(study_file):
    """Two participants; original rated (5,4) and (3,4), pruned (2,2) and (2,4); picks: original twice, pruned once."""
    conn = db.connect(study_file)
    images = {r["name"]: r["id"] for r in conn.execute(
        "SELECT m.name, i.id FROM images i JOIN methods m ON m.id = i.method_id WHERE i.prompt_id = 1")}
    other = conn.execute("SELECT i.id FROM images i JOIN methods m ON m.id = i.method_id "
                         "WHERE i.prompt_id = 2 AND m.name = 'pruned'").fetchone()["id"]
    for person in (1, 2):
        db.add_participant(conn, f"token{person}", "[]", 0.0)
    for person, method, ta, iq in [(1, "original", 5, 4), (2, "original", 3, 4), (1, "pruned", 2, 2), (2, "pruned", 2, 4)]:
        db.add_rating(conn, person, images[method], ta, iq, 0.0)
    db.add_pick(conn, 1, 1, images["original"], 0.0)
    db.add_pick(conn, 2, 1, images["original"], 0.0)
    db.add_pick(conn, 1, 2, other, 0.0)
    results = summarise(conn)
    original, pruned = results.methods
    assert results.reference == "original" and results.ratings == 4 and results.participants == 2
    assert original.scores["text_alignment"].value == 4 and pruned.scores["text_alignment"].value == 2
    assert pruned.scores["text_alignment"].half_width == 0
    assert pruned.drops == {"text_alignment": 50.0, "image_quality": 25.0} and original.drops["image_quality"] == 0
    assert original.best_pick.value == pytest.approx(2 / 3) and pruned.best_pick.n == 3
    assert summarise(conn, "pruned").methods[0].drops["text_alignment"] == -100.0
    table = format_table(results)
    assert "pruned" in table and "+50.0%" in table and "66.7% of 3" in table
    with pytest.raises(Exception, match="not one of the methods"):
        summarise(conn, "nope")
    conn.close()


def test_ratings_outside_0_to_5_are_refused_by_the_schema_too(study_file):
    conn = db.connect(study_file)
    db.add_participant(conn, "t", "[]", 0.0)
    image = conn.execute("SELECT id FROM images LIMIT 1").fetchone()["id"]
    with pytest.raises(sqlite3.IntegrityError):
        db.add_rating(conn, 1, image, 6, 3, 0.0)
    conn.close()
