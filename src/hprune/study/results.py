"""A study's results per method: MOS of both dimensions, best-pick share and the
relative drop against a reference; as rows, a terminal table and CSV files."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from hprune.core.errors import HpruneError
from hprune.study import db
from hprune.study.stats import Estimate, mos, relative_drop, share

DIMENSIONS = {"text_alignment": "Text Alignment", "image_quality": "Image Quality"}
RATING_COLUMNS = ["participant", "prompt_index", "prompt", "seed", "method", "image_id", "text_alignment",
                  "image_quality", "created_at"]
PICK_COLUMNS = ["participant", "prompt_index", "prompt", "seed", "method", "image_id", "created_at"]


@dataclass(frozen=True)
class MethodResult:
    method: str
    scores: dict[str, Estimate]  # dimension -> MOS
    best_pick: Estimate
    drops: dict[str, float | None]  # dimension -> % below the reference's MOS


@dataclass(frozen=True)
class Results:
    reference: str
    participants: int
    finished: int
    ratings: int
    methods: list[MethodResult]


def summarise(conn, reference: str | None = None) -> Results:
    names = db.method_names(conn)
    reference = reference or db.get_meta(conn, "reference") or names[0]
    if reference not in names:
        raise HpruneError(f"reference {reference!r} is not one of the methods {names}; pick one of those.")
    ratings = db.rating_rows(conn)
    picks = db.pick_rows(conn)
    scores = {m: {d: mos([r[d] for r in ratings if r["method"] == m]) for d in DIMENSIONS} for m in names}
    started, finished = db.participant_counts(conn)
    rows = [MethodResult(m, scores[m], share(sum(p["method"] == m for p in picks), len(picks)),
                         {d: relative_drop(scores[reference][d].value, scores[m][d].value) for d in DIMENSIONS})
            for m in names]
    return Results(reference, started, finished, len(ratings), rows)


def _score(e: Estimate) -> str:
    if e.value is None:
        return "-"
    return f"{e.value:.2f}" + (f" ± {e.half_width:.2f}" if e.half_width is not None else "")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def table_rows(results: Results) -> list[list[str]]:
    """Header and one row per method, as strings (the terminal and the HTML page show the same)."""
    header = ["method", "ratings", "Text Alignment (95% CI)", "Image Quality (95% CI)", "best pick",
              f"TA drop vs {results.reference}", f"IQ drop vs {results.reference}"]
    rows = [[r.method, str(r.scores["text_alignment"].n), _score(r.scores["text_alignment"]),
             _score(r.scores["image_quality"]),
             "-" if r.best_pick.value is None else f"{100 * r.best_pick.value:.1f}% of {r.best_pick.n}",
             _percent(r.drops["text_alignment"]), _percent(r.drops["image_quality"])] for r in results.methods]
    return [header, *rows]


def format_table(results: Results) -> str:
    rows = table_rows(results)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    summary = (f"{results.participants} participants ({results.finished} finished), {results.ratings} ratings; "
               "MOS 0-5 with Student-t 95% CI; drop = (reference - method) / reference")
    return "\n".join([summary, "", *lines])


def to_csv(rows, columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows([[_safe_cell(row[c]) for c in columns] for row in rows])
    return out.getvalue()


def _safe_cell(value):
    """Prompts are user text: a leading = + - @ would run as a formula in a spreadsheet."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
