import json
import re

import pytest
from PIL import Image, ImageDraw

from hprune.cli import main
from hprune.core.errors import HpruneError
from hprune.core.files import write_json
from hprune.planning.plan import Plan
from hprune.report.run_page import write_report
from hprune.folders.run_layout import VARIANTS, RunLayout
from test_analysis import write_run as write_analysis  # tests/report is on sys.path (no __init__.py)

SECTIONS = ("model-plan", "quality", "memory", "samples", "distillation", "recipe")
EVERY_PART = frozenset({"analysis", "plan", "distill", "samples", "scores", "memory"})
PROMPTS = ["a red circle above a blue square", "two green triangles", "a small yellow star | left"]
RECIPE = '# the effective recipe\n[distill]\nsteps = 20\nlr = 1e-4\n\n[plan]\nalpha = 0.5\n'


def write_run_folder(root, parts=EVERY_PART, quant=True, bench=False):
    """A run folder as layout.py declares it, made-up numbers; `parts` picks the stages
    that have written their files (run.json and recipe.toml are always there)."""
    layout = RunLayout(root)
    root.mkdir(parents=True)
    write_json(layout.info, {"model": "shapes-sd3", "family": "sd3", "ratio": 0.2, "quant": "int4" if quant else None,
                             "recipe": "cpu-default", "command": ["hprune", "run", "shapes-sd3", "--ratio", "0.2"],
                             "versions": {"hprune": "0.1.0", "torch": "2.5.0", "diffusers": "0.32.0"},
                             "started": "2026-11-30T06:00:00+0000"})
    layout.recipe.write_text(RECIPE)
    variants = [v for v in VARIANTS if v != "quantized" or quant]
    if "analysis" in parts:
        write_analysis(layout.analysis)
        _stage(layout, "analysis", "profiled 36 units")
    if "plan" in parts:
        layout.plan.parent.mkdir()
        Plan("sd3", {"num_layers": 6}, ["joint.4.block", "joint.5.block", "joint.2.attn"], "hpp",
             ratio_target=0.2, ratio_reached=0.213).save(layout.plan)
        _stage(layout, "plan", "hpp plan: 3 units")
    if "distill" in parts:
        _write_loss(layout.distill)
    if "samples" in parts:
        for i, variant in enumerate(variants):
            _write_samples(layout.samples(variant), drift=i)
    if "scores" in parts:
        write_json(layout.scores, _scores(variants))
    if "memory" in parts:
        write_json(layout.memory, _memory(bench))
    return root


def _stage(layout, stage, summary):
    layout.stage_marker(stage).parent.mkdir(exist_ok=True)
    write_json(layout.stage_marker(stage), {"stage": stage, "summary": summary, "seconds": 1.5, "finished": "now"})


def _write_loss(folder):
    folder.mkdir(parents=True)
    rows = [f"{s},{1.0 / (s + 1):.6g},{0.6 / (s + 1):.6g},{0.4 / (s + 1) ** 0.5:.6g}" for s in range(20)]
    (folder / "loss.csv").write_text("step,loss,kd,feat\n" + "\n".join(rows) + "\n19,0.0")  # a torn last line


def _write_samples(folder, drift):
    """One 32 px picture per prompt; each later variant's shapes drift a pixel further."""
    folder.mkdir(parents=True)
    records = []
    for index, prompt in enumerate(PROMPTS):
        image = Image.new("RGB", (32, 32), (245, 245, 240))
        draw = ImageDraw.Draw(image)
        if index == 0:
            draw.ellipse((10 + drift, 2, 22 + drift, 14), fill=(220, 40, 40))
            draw.rectangle((9, 18 + drift, 23, 30), fill=(40, 70, 220))
        elif index == 1:
            for x in (3, 17):
                draw.polygon([(x + drift, 24), (x + 12 + drift, 24), (x + 6, 10)], fill=(40, 170, 60))
        else:
            draw.polygon([(6, 4), (9 + drift, 11), (14, 11), (10, 15), (12, 22), (6, 17), (0, 22), (2, 15)],
                         fill=(230, 200, 30))
        image.save(folder / f"{index:05d}.png")
        records.append({"index": index, "prompt": prompt, "seed": 100 + index, "path": f"{index:05d}.png"})
    (folder / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _scores(variants):
    rows = []
    for i, name in enumerate(variants):
        semantic, quality = 0.8 - 0.05 * i, 0.9 - 0.03 * i
        per_category = {c: {"semantic": semantic - 0.01 * j, "quality": quality, "n": 16}
                        for j, c in enumerate(("count", "color", "position", "size"))}
        rows.append({"name": name, "stage": {"teacher": "teacher", "pruned": "prune", "distilled": "distill",
                                             "quantized": "quantize"}[name],
                     "params": 610 - 100 * (i > 0), "semantic": semantic, "quality": quality, "semantic_se": 0.021,
                     "quality_se": 0.013, "per_category": per_category, "degradation": None if i == 0 else 0.04 * i})
    return {"metric": "shapes", "split": "test", "n": 64, "variants": rows}


def _memory(bench):
    out = {"teacher": {"params": 610, "weight_bytes": 2440}, "compressed": {"params": 410, "weight_bytes": 820},
           "bench": None}
    if bench:
        out["bench"] = {"device": "NVIDIA H200", "teacher_ms_per_step": 40.0, "compressed_ms_per_step": 30.0,
                        "teacher_peak_gib": 20.5, "compressed_peak_gib": 9.1}
    return out


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """(html, markdown, run folder) of a run that finished every stage; drawn once for the module."""
    root = write_run_folder(tmp_path_factory.mktemp("run") / "run")
    page, markdown = write_report(root)
    return page.read_text(), markdown.read_text(), root


# ----------------------------------------------------------------- content


def test_every_section_is_in_the_page_and_the_markdown(full_report):
    page, markdown, _ = full_report
    for section in SECTIONS:
        assert re.search(f'<section id="{section}"><h2>[^<]+</h2>', page), section
        assert re.search(f'<a id="{section}"></a>\n\n## ', markdown), section
    for text in ("joint.4.block", "paper&#x27;s Figure 4", "0.800 ± 0.021", "8.0%", "count (n=16)",
                 "No GPU: weight bytes only.", "2.38 KiB", "two green triangles (seed 101)", "distillation loss curves",
                 "steps = 20", "diffusers", "hprune run shapes-sd3 --ratio 0.2", "profiled 36 units"):
        assert text in page, text
    assert "20 steps logged" in markdown  # the torn last line of loss.csv is skipped
    assert "a small yellow star \\| left (seed 102)" in markdown  # a pipe in a prompt does not split the row
    for table in re.findall(r"(?:^\|.*\n)+", markdown, flags=re.M):
        assert len({len(re.split(r"(?<!\\)\|", line)) for line in table.splitlines()}) == 1, table


def test_plan_counts_the_parameters_it_removes(full_report):
    page, _, _ = full_report
    # joint.4 and joint.5 blocks (100 each) and joint.2.attn (40) of the analysis' 610
    assert "240 of 610 parameters removed (39.3%)" in page
    assert "target ratio 20%, reached 21.3%" in page


def test_markdown_images_are_files_beside_it(full_report):
    _, markdown, root = full_report
    linked = re.findall(r"!\[[^\]]*\]\((report_files/[^)]+)\)", markdown)
    assert {"report_files/contribution.png", "report_files/loss.png"} <= set(linked)
    assert len([p for p in linked if "sample_" in p]) == len(PROMPTS) * len(VARIANTS)
    for path in linked:
        assert (root / path).read_bytes().startswith(b"\x89PNG"), path


def test_page_is_self_contained(full_report):
    page, _, _ = full_report
    assert not re.search(r"https?://", page)
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 2 + len(PROMPTS) * len(VARIANTS)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in page and "<link" not in page


def test_bench_block_gives_latency(tmp_path):
    page, markdown = write_report(write_run_folder(tmp_path / "run", bench=True))
    text = page.read_text()
    assert "1.33x faster per step" in text and "9.10 GiB" in text and "No GPU" not in text


@pytest.mark.parametrize("parts, sentences", [
    (frozenset(), ["No plan yet", "No contribution analysis yet", "No stage has finished yet", "No quality scores yet",
                   "No memory measurements yet", "No samples yet", "No distillation losses yet"]),
    (frozenset({"analysis", "plan", "distill"}), ["No quality scores yet", "No samples yet"]),
])
def test_missing_stages_say_so(tmp_path, parts, sentences):
    page, markdown = write_report(write_run_folder(tmp_path / "run", parts))
    for text in (page.read_text(), markdown.read_text()):
        assert all(f'id="{s}"' in text for s in SECTIONS)
        for sentence in sentences:
            assert sentence in text, sentence


def test_without_quantization_the_grid_has_three_columns(tmp_path):
    page, _ = write_report(write_run_folder(tmp_path / "run", quant=False))
    text = page.read_text()
    assert "<th>prompt (seed)</th><th>teacher</th><th>pruned</th><th>distilled</th></tr>" in text
    assert "No samples of quantized" in text and "quantization none" in text
    assert "did not run" in text  # no quantize marker: the stage has not run


def test_a_quantize_stage_that_quantized_nothing_is_not_called_missing(tmp_path):
    root = write_run_folder(tmp_path / "run", quant=False)
    _stage(RunLayout(root), "quantize", "no quantization; the compressed model is runs/x/model")
    page, _ = write_report(root)
    text = page.read_text()
    assert "No samples of quantized: the recipe quantizes nothing (quantize.backend = none)" in text
    assert "did not run" not in text


def test_a_second_report_drops_images_it_no_longer_uses(tmp_path):
    root = write_run_folder(tmp_path / "run")
    write_report(root)
    (root / "samples" / "quantized" / "generations.jsonl").unlink()
    write_report(root)
    names = {p.name for p in (root / "report_files").iterdir()}
    assert "sample_teacher_00000.png" in names and not any(n.startswith("sample_quantized") for n in names)
    assert not any(n.endswith(".tmp") for n in names)


# ----------------------------------------------------------------- browser


def test_page_renders_in_chromium(full_report, browser_page):
    _, _, root = full_report
    browser_page.goto((root / "report.html").as_uri())
    assert browser_page.console_errors == []
    for section in SECTIONS:
        assert browser_page.locator(f"#{section}").is_visible(), section
        assert browser_page.locator(f"#{section} h2").is_visible(), section
    broken = browser_page.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length")
    assert broken == 0 and browser_page.evaluate("document.images.length") == 2 + len(PROMPTS) * len(VARIANTS)


# ----------------------------------------------------------------- command


def test_command_writes_the_report(tmp_path, capsys):
    root = write_run_folder(tmp_path / "run", frozenset({"plan"}))
    assert main(["report", str(root)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert (root / "report.html").is_file() and (root / "report.md").is_file()


def test_command_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path} is not an `hprune run` folder (it has no run.json)" in err
    assert not (tmp_path / "report.html").exists()
    with pytest.raises(HpruneError, match="hprune run MODEL --out"):
        write_report(tmp_path / "missing")
