"""The results chart as inline SVG (no script, no network): per method, one bar per
dimension at its MOS with a 95% CI error bar, and the relative drop vs the reference
under the method's name, in the manner of the paper's Figure 1."""

from __future__ import annotations

from html import escape

from hprune.study.results import DIMENSIONS, Results

COLOURS = {"text_alignment": "#4c72b0", "image_quality": "#dd8452"}
HEIGHT, TOP, BOTTOM, LEFT, MIN_WIDTH = 320, 30, 90, 50, 520
BAR, GAP, GROUP_GAP = 28, 4, 36


def bar_chart(results: Results) -> str:
    group = len(DIMENSIONS) * (BAR + GAP) - GAP
    width = max(MIN_WIDTH, LEFT + len(results.methods) * (group + GROUP_GAP) + 20)
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{HEIGHT}" '
              f'viewBox="0 0 {width} {HEIGHT}" role="img" aria-label="mean opinion scores per method">')]
    parts += _axis(width)
    for i, method in enumerate(results.methods):
        x0 = LEFT + GROUP_GAP / 2 + i * (group + GROUP_GAP)
        for j, dim in enumerate(DIMENSIONS):
            parts += _bar(x0 + j * (BAR + GAP), method.scores[dim], COLOURS[dim])
        centre = x0 + group / 2
        parts.append(f'<text x="{centre:.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle" '
                     f'font-size="12">{escape(method.method)}</text>')
        drops = " / ".join("ref" if method.method == results.reference else _pct(method.drops[d]) for d in DIMENSIONS)
        parts.append(f'<text x="{centre:.1f}" y="{HEIGHT - BOTTOM + 34}" text-anchor="middle" font-size="10" '
                     f'fill="#555">{escape(drops)}</text>')
    parts += _legend()
    parts.append("</svg>")
    return "\n".join(parts)


def _y(score: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - score / 5)


def _axis(width: int) -> list[str]:
    out = []
    for tick in range(6):
        y = _y(tick)
        out.append(f'<line x1="{LEFT}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{tick}</text>')
    out.append(f'<text x="14" y="{_y(2.5):.1f}" font-size="11" transform="rotate(-90 14 {_y(2.5):.1f})" '
               'text-anchor="middle">MOS (0-5)</text>')
    return out


def _bar(x: float, score, colour: str) -> list[str]:
    if score.value is None:
        return []
    out = [(f'<rect x="{x:.1f}" y="{_y(score.value):.1f}" width="{BAR}" height="{_y(0) - _y(score.value):.1f}" '
            f'fill="{colour}"><title>{score.value:.2f} (n={score.n})</title></rect>')]
    if score.low is not None:
        c, lo, hi = x + BAR / 2, _y(max(score.low, 0)), _y(min(score.high, 5))
        out.append(f'<path d="M{c:.1f} {lo:.1f}V{hi:.1f}M{c - 6:.1f} {lo:.1f}h12M{c - 6:.1f} {hi:.1f}h12" '
                   'stroke="#222" stroke-width="1.5" fill="none" class="error-bar"/>')
    return out


def _legend() -> list[str]:
    out = []
    for j, (dim, label) in enumerate(DIMENSIONS.items()):
        x = LEFT + j * 140
        out.append(f'<rect x="{x}" y="{HEIGHT - 36}" width="12" height="12" fill="{COLOURS[dim]}"/>')
        out.append(f'<text x="{x + 16}" y="{HEIGHT - 26}" font-size="11">{label}</text>')
    out.append(f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="10" fill="#555">under each name: drop vs '
               'the reference (Text Alignment / Image Quality); error bars: 95% CI</text>')
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"
