"""The report of one `hprune run` folder: RUN_DIR/report.html and RUN_DIR/report.md.

report.html is one self-contained page: inline CSS, images as base64 data URIs, no
script, no link outside the file; it opens from disk in any browser. report.md is its
Markdown twin; its images are PNG files in RUN_DIR/report_files/. Both hold the same
sections, in this order, each `<section id=ID>` (HTML) or `<a id="ID"></a>` before its
`## ` heading (Markdown):

    model-plan     the model, the plan, parameters removed, the contribution heatmap
    quality        teacher vs each variant (scores.json), per category, degradation
    memory         weight bytes, and latency and peak memory when a GPU measured them
    samples        the same prompts and seeds: teacher | pruned | distilled | quantized
    distillation   the loss curves of distill/loss.csv
    recipe         recipe.toml verbatim, run.json and the versions

A section whose input a stopped run has not written yet says so in one sentence.
The sections are built as a few plain blocks (text, table, image, code), and each
block is written once per format, so the two files cannot drift apart.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from hprune.core.files import write_atomic
from hprune.report.run_blocks import Code, Image, Section, Table, Text, read_run_info
from hprune.report.run_sections import build_sections
from hprune.folders.run_layout import REPORT_FILES, RunLayout


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write RUN_DIR/report.html and RUN_DIR/report.md (and report_files/); returns both paths.
    Works on a run stopped at any stage; raises HpruneError when RUN_DIR has no run.json."""
    layout = RunLayout(run_dir)
    info = read_run_info(layout)
    sections = build_sections(layout, info)
    title = f"hprune run: {info.get('model', '?')} at ratio {info.get('ratio', '?')}"
    _write_images(layout.root / REPORT_FILES, [image for s in sections for image in s.images()])
    write_atomic(layout.report_md, render_markdown(title, sections))
    write_atomic(layout.report_html, render_html(title, sections))
    return layout.report_html, layout.report_md


def _write_images(folder: Path, images: list[Image]) -> None:
    """The Markdown's PNGs; files an earlier report left there and this one does not use go."""
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        write_atomic(folder / image.name, image.png)
    keep = {image.name for image in images}
    for old in folder.glob("*.png"):
        if old.name not in keep:
            old.unlink()


# ----------------------------------------------------------------- HTML

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1150px;margin:0 auto;padding:0 16px 40px;color:#222}
h1{font-size:1.5em;margin-top:24px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
nav a{margin-right:14px} table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:middle}
th{background:#f4f4f4} td.img{padding:2px} img{max-width:100%}
td.img img{image-rendering:pixelated;display:block}
pre{background:#f6f6f6;padding:10px;overflow-x:auto;font-size:12px}
"""


def render_html(title: str, sections: list[Section]) -> str:
    nav = " ".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(_html_section(s) for s in sections)
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1><nav>{nav}</nav>\n{body}</body></html>\n")


def _html_section(section: Section) -> str:
    inner = "".join(_html_block(b) for b in section.blocks)
    return f'<section id="{section.id}"><h2>{html.escape(section.title)}</h2>{inner}</section>\n'


def _html_block(block) -> str:
    if isinstance(block, Text):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Code):
        return f"<pre>{html.escape(block.text)}</pre>"
    if isinstance(block, Image):
        return f"<p>{_html_image(block)}</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
    rows = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block.rows)
    return f"<table><tr>{head}</tr>{rows}</table>"


def _html_cell(cell) -> str:
    if isinstance(cell, Image):
        return f'<td class="img">{_html_image(cell)}</td>'
    return f"<td>{html.escape(str(cell))}</td>"


def _html_image(image: Image) -> str:
    data = base64.b64encode(image.png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(image.alt)}">'


# ----------------------------------------------------------------- Markdown


def render_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}", " · ".join(f"[{s.title}](#{s.id})" for s in sections)]
    for section in sections:
        parts.append(f'<a id="{section.id}"></a>\n\n## {section.title}')
        parts.extend(_md_block(b) for b in section.blocks)
    return "\n\n".join(parts) + "\n"


def _md_block(block) -> str:
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Code):
        # A fence longer than any backtick run inside, so the recipe cannot close it.
        fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", block.text)), default=0))
        return f"{fence}\n{block.text.rstrip()}\n{fence}"
    if isinstance(block, Image):
        return _md_cell(block)
    lines = ["| " + " | ".join(_md_cell(h) for h in block.header) + " |", "|" + "---|" * len(block.header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
    return "\n".join(lines)


def _md_cell(cell) -> str:
    if isinstance(cell, Image):
        alt = _md_text(cell.alt).replace("[", "(").replace("]", ")")
        return f"![{alt}]({REPORT_FILES}/{cell.name})"
    return _md_text(cell)


def _md_text(cell) -> str:
    """One line, its pipes escaped: a prompt with a newline or `|` must not break a table row."""
    return " ".join(str(cell).split()).replace("|", "\\|")
