"""A CPU-sized ablation: one tiny row per method, a few steps, keeps the code path alive."""

import json
from pathlib import Path

import pytest
import torch

import hprune.experiments.ablate
from hprune.experiments.ablate import METHODS, AblateConfig, ablate, degradation, markdown_table
from hprune.distill import DistillConfig
from hprune.core.errors import HpruneError
from hprune.analysis.profile import ProfileConfig, profile
from hprune.toy.pipeline import ArchConfig, build_pipeline
from hprune.toy.prompts import VOCABULARY


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate")
    torch.manual_seed(0)
    arch = ArchConfig(family="sd3", width=32, head_dim=16, num_layers=4, image_size=64, patch_size=8,
                      text_width=32, text_layers=1)
    pipe = build_pipeline(arch, VOCABULARY)
    pipe.save_pretrained(root / "teacher")
    profile(pipe, ProfileConfig(n_prompts=4, steps=2, batch_size=4), root / "run", progress=False)
    return root


@pytest.fixture
def sealed_choice(monkeypatch, seal_test_split):
    """ablate's choice of r_thres runs with the test split sealed, the teacher's scores on it
    (teacher.json) included; returns how often it ran."""
    choose, calls = hprune.experiments.ablate.chosen_r_thres, []

    def sealed(teacher, run_dir, out, cfg):
        calls.append(cfg)
        with seal_test_split(Path(out) / "teacher.json"):
            return choose(teacher, run_dir, out, cfg)

    monkeypatch.setattr(hprune.experiments.ablate, "chosen_r_thres", sealed)
    return calls


def test_every_method_gives_a_row(tiny_teacher):
    cfg = AblateConfig(ratios=(0.3,), distill=DistillConfig(steps=2, batch_size=2, checkpoint_every=1),
                       data_size=8, per_category=1, eval_steps=2)
    rows = ablate(str(tiny_teacher / "teacher"), tiny_teacher / "run", tiny_teacher / "out", cfg)
    assert [r["method"] for r in rows] == list(METHODS)
    keys = {"teacher", "method", "ratio", "quant", "params", "semantic", "quality", "degradation", "gpu_seconds",
            "ratio_reached", "seeds", "degradation_ci95"}
    assert all(keys <= r.keys() for r in rows)
    teacher = json.loads((tiny_teacher / "out" / "teacher.json").read_text())
    assert all(r["params"] < teacher["params"] for r in rows)
    # every ranking prunes the same parameter count within one unit
    counts = sorted(r["params"] for r in rows)
    largest_unit = max(json.loads((tiny_teacher / "run" / "units.json").read_text())["params"].values())
    assert counts[-1] - counts[0] <= largest_unit
    assert "hpp+pwp+sgdistill" in markdown_table(teacher, rows)
    again = ablate(str(tiny_teacher / "teacher"), tiny_teacher / "run", tiny_teacher / "out", cfg)
    assert again == rows  # finished rows are read back, not recomputed


def test_degradation_is_the_mean_relative_drop():
    assert degradation({"semantic": 0.8, "quality": 0.5}, {"semantic": 0.4, "quality": 0.5}) == pytest.approx(0.25)


def test_bad_settings():
    with pytest.raises(HpruneError, match="between 0 and 1"):
        AblateConfig(ratios=(1.2,))
    with pytest.raises(HpruneError, match="unknown methods"):
        AblateConfig(methods=("magic",))
    for seeds in [(), (1, 1), (-1,)]:
        with pytest.raises(HpruneError, match="--seeds"):
            AblateConfig(seeds=seeds)


def test_seeds_give_a_mean_an_interval_and_a_paired_bootstrap_at_40_percent(tiny_teacher):
    """Each distilled row once per seed, as its own resumable job; hpp alone once; the 40% plans
    of HPP and a baseline run through distillation (item 4 of issue 21)."""
    cfg = AblateConfig(ratios=(0.4,), methods=("koala", "hpp", "hpp+pwp", "hpp+pwp+sgdistill"), seeds=(0, 1),
                       distill=DistillConfig(steps=1, batch_size=2, checkpoint_every=1),
                       data_size=8, per_category=1, eval_steps=2)
    out = tiny_teacher / "out-seeds"
    rows = ablate(str(tiny_teacher / "teacher"), tiny_teacher / "run", out, cfg)
    koala, hpp, ours, sgdistill = rows
    assert [r["method"] for r in rows] == ["koala", "hpp", "hpp+pwp", "hpp+pwp+sgdistill"]
    assert koala["seeds"] == ours["seeds"] == [0, 1] and hpp["seeds"] == [0]
    jobs = sorted(p.name for p in out.glob("*-0.4*.json"))
    assert jobs == ["hpp+pwp+sgdistill-0.4-s1.json", "hpp+pwp+sgdistill-0.4.json", "hpp+pwp-0.4-s1.json",
                    "hpp+pwp-0.4.json", "hpp-0.4.json", "koala-0.4-s1.json", "koala-0.4.json"]
    assert all((out / j).with_suffix(".npz").is_file() for j in jobs)
    for row in (koala, ours):
        per_seed = [json.loads((out / f"{row['method']}-0.4{s}.json").read_text())[0]["degradation"] for s in ("", "-s1")]
        assert row["degradation"] == pytest.approx(sum(per_seed) / 2)
        low, high = row["degradation_ci95"]
        assert low <= row["degradation"] <= high
        assert row["ratio_reached"] > 0.35
    assert hpp["degradation_ci95"] == [hpp["degradation"]] * 2
    assert sgdistill["seeds"] == [0, 1] and "vs_best_baseline" not in sgdistill
    paired = ours["vs_best_baseline"]
    assert paired["baseline"] == "koala"  # the only baseline here
    # the bootstrap's point estimate, from the per-image scores, is the table's difference
    assert paired["diff"] == pytest.approx(ours["degradation"] - koala["degradation"], abs=1e-9)
    assert paired["diff_ci95"][0] <= paired["diff"] <= paired["diff_ci95"][1]
    teacher = json.loads((out / "teacher.json").read_text())
    table = markdown_table(teacher, rows)
    assert "paired bootstrap" in table and f"{100 * ours['ratio_reached']:.1f}%" in table
    assert ", ".join(f"{100 * d:.1f}" for d in ours["degradation_per_seed"]) in table  # each seed's degradation


def test_the_table_is_rebuilt_from_the_job_files_alone(tiny_teacher, script):
    """scripts/ablation_tables.py's path: the committed per-job files give back the rows ablate
    returned (means, intervals, paired bootstrap); an unfinished job is named, not skipped."""
    from hprune.experiments.ablate import compare_methods, table_from_jobs

    cfg = AblateConfig(ratios=(0.4,), methods=("koala", "hpp", "hpp+pwp"), seeds=(0, 1),
                       distill=DistillConfig(steps=1, batch_size=2, checkpoint_every=1),
                       data_size=8, per_category=1, eval_steps=2)
    out = tiny_teacher / "out-rebuild"
    rows = ablate(str(tiny_teacher / "teacher"), tiny_teacher / "run", out, cfg)
    teacher, rebuilt = table_from_jobs(out)
    assert rebuilt == rows and teacher == json.loads((out / "teacher.json").read_text())
    ours = next(r for r in rows if r["method"] == "hpp+pwp")
    pairs = compare_methods(out, rows, "hpp+pwp", "koala")
    assert pairs == [{"ratio": 0.4, "quant": "none", **ours["vs_best_baseline"]}]
    assert compare_methods(out, rows, "hpp+pwp", "bkscore") == []  # no such row
    tables = script("ablation_tables")
    assert tables.main([str(out), "--samples", str(tiny_teacher / "sheet.png"), "--pair", "hpp+pwp,koala"]) == 0
    assert (tiny_teacher / "sheet.txt").read_text().split() == ["teacher", "koala-0.4", "hpp-0.4", "hpp+pwp-0.4"]
    assert tables.main([str(out), "--pair", "hpp+pwp,bkscore"]) == 1  # not a method of this table
    (out / "koala-0.4-s1.json").unlink()
    with pytest.raises(HpruneError, match="1 jobs .* have not finished \\(koala-0.4-s1\\)"):
        table_from_jobs(out)


def test_hpp_distill_row_distils_hpps_plan_without_pwp_or_sgdistill(tiny_teacher):
    """PWP's own effect: hpp+distill and hpp+pwp share the plan, the seeds and the budget; only PWP differs."""
    cfg = AblateConfig(ratios=(0.3,), methods=("hpp", "hpp+distill", "hpp+pwp"), seeds=(0, 1),
                       distill=DistillConfig(steps=1, batch_size=2, checkpoint_every=1),
                       data_size=8, per_category=1, eval_steps=2)
    assert METHODS.index("hpp") < METHODS.index("hpp+distill") < METHODS.index("hpp+pwp")
    out = tiny_teacher / "out-distill"
    rows = ablate(str(tiny_teacher / "teacher"), tiny_teacher / "run", out, cfg)
    assert [r["method"] for r in rows] == ["hpp", "hpp+distill", "hpp+pwp"]
    assert rows[1]["seeds"] == rows[2]["seeds"] == [0, 1]
    assert rows[1]["params"] == rows[2]["params"] == rows[0]["params"]
    plan = lambda name: json.loads((out / name / "plan.json").read_text())["units"]
    assert plan("hpp+distill-0.3") == plan("hpp+pwp-0.3") == plan("hpp-0.3")
    for seed, suffix in ((0, ""), (1, "-s1")):
        summary = json.loads((out / f"hpp+distill-0.3{suffix}" / "student" / "training_summary.json").read_text())
        assert summary["config"]["seed"] == seed
        assert not summary["config"]["pwp"] and not summary["config"]["sgdistill"]
    ours = json.loads((out / "hpp+pwp-0.3" / "student" / "training_summary.json").read_text())
    assert ours["config"]["pwp"] and not ours["config"]["sgdistill"]
    assert "| hpp+distill | 0.3 |" in markdown_table(json.loads((out / "teacher.json").read_text()), rows)


def test_sample_sheet_has_one_strip_per_row_in_table_order(tiny_teacher):
    from PIL import Image

    out = tiny_teacher / "out"
    cfg = AblateConfig(ratios=(0.3,), distill=DistillConfig(steps=2, batch_size=2, checkpoint_every=1),
                       data_size=8, per_category=1, eval_steps=2)
    ablate(str(tiny_teacher / "teacher"), tiny_teacher / "run", out, cfg)
    names = (out / "samples.txt").read_text().split()
    assert names == ["teacher"] + [f"{m}-0.3" for m in METHODS]
    strip = Image.open(out / "teacher.png")
    sheet = Image.open(out / "samples.png")
    assert sheet.size == (strip.size[0], strip.size[1] * len(names))


def test_quant_twin_rows_follow_each_row(tiny_teacher):
    cfg = AblateConfig(ratios=(0.3,), methods=("hpp", "hpp+pwp"), quant="w4fp8",
                       distill=DistillConfig(steps=1, batch_size=2, checkpoint_every=1),
                       data_size=8, per_category=1, eval_steps=2)
    rows = ablate(str(tiny_teacher / "teacher"), tiny_teacher / "run", tiny_teacher / "out-quant", cfg)
    assert [(r["method"], r["quant"]) for r in rows] == [("hpp", "none"), ("hpp", "w4fp8"),
                                                         ("hpp+pwp", "none"), ("hpp+pwp", "w4fp8")]
    assert rows[0]["params"] == rows[1]["params"]
    names = (tiny_teacher / "out-quant" / "samples.txt").read_text().split()
    assert names == ["teacher", "hpp-0.3", "hpp+pwp-0.3", "hpp-0.3-w4fp8", "hpp+pwp-0.3-w4fp8"]
    job = json.loads((tiny_teacher / "out-quant" / "hpp+pwp-0.3.json").read_text())
    assert [r["kept_16bit"] for r in job] == [None, ["context_embedder", "proj_out"]]  # w4fp8's default
    assert [r["rounding"] for r in job] == [None, "gptq"]  # as `hprune quantize` rounds a pipeline's model


@pytest.mark.parametrize("missing, said", [("kept_16bit", "every linear layer quantized"),
                                            ("rounding", "weights rounded to nearest")])
def test_a_twin_made_with_older_defaults_is_refused_on_resume(tiny_teacher, missing, said):
    """Twin rows written before w4fp8 kept its input/output layers in 16 bit, or before it rounded by
    GPTQ, must not join new ones."""
    cfg = AblateConfig(ratios=(0.3,), methods=("hpp",), quant="w4fp8",
                       distill=DistillConfig(steps=1, batch_size=2, checkpoint_every=1),
                       data_size=8, per_category=1, eval_steps=2)
    out = tiny_teacher / f"out-stale-{missing}"
    ablate(str(tiny_teacher / "teacher"), tiny_teacher / "run", out, cfg)
    job = out / "hpp-0.3.json"
    job.write_text(json.dumps([{k: v for k, v in r.items() if k != missing} for r in json.loads(job.read_text())]))
    with pytest.raises(HpruneError, match=f"hpp-0.3.json holds a 4-bit twin row measured with {said}"):
        ablate(str(tiny_teacher / "teacher"), tiny_teacher / "run", out, cfg)


def test_r_thres_reaches_the_hpp_plans_only(tiny_teacher):
    cfg = AblateConfig(ratios=(0.3,), methods=("hpp", "koala"), r_thres=0.01,
                       distill=DistillConfig(steps=1, batch_size=2, checkpoint_every=1),
                       data_size=8, per_category=1, eval_steps=2)
    out = tiny_teacher / "out-rthres"
    ablate(str(tiny_teacher / "teacher"), tiny_teacher / "run", out, cfg)
    hpp = json.loads((out / "hpp-0.3" / "plan.json").read_text())
    koala = json.loads((out / "koala-0.3" / "plan.json").read_text())
    assert hpp["r_thres"] == 0.01 and not any(u.endswith(".block") for u in hpp["units"])
    assert koala["r_thres"] is None and any(u.endswith(".block") for u in koala["units"])  # not held to r_thres
    with pytest.raises(HpruneError, match="--r-thres"):
        AblateConfig(r_thres=1.5)


def test_r_thres_val_is_chosen_on_the_val_split_and_used(tiny_teacher, sealed_choice):
    cfg = AblateConfig(ratios=(0.3,), methods=("hpp",), r_thres="val", per_category=1, eval_steps=2)
    out = tiny_teacher / "out-rthres-val"
    rows = ablate(str(tiny_teacher / "teacher"), tiny_teacher / "run", out, cfg)
    assert len(sealed_choice) == 1  # the choice ran with the test split sealed (conftest's seal_test_split)
    sweep = json.loads((out / "rthres-0.3.json").read_text())
    assert (out / "teacher-val.json").is_file()
    best = min(c["val_degradation"] for c in sweep["candidates"])
    chosen = [c for c in sweep["candidates"] if c["r_thres"] == sweep["chosen"]][0]
    assert chosen["val_degradation"] == best
    assert rows[0]["r_thres"] == sweep["chosen"]
    assert json.loads((out / "hpp-0.3" / "plan.json").read_text())["r_thres"] == sweep["chosen"]
    with pytest.raises(HpruneError, match="--r-thres"):
        AblateConfig(r_thres="test")


def test_a_val_run_is_compared_with_the_teacher_on_val(tiny_teacher):
    cfg = AblateConfig(ratios=(0.3,), methods=("hpp",), split="val", per_category=1, eval_steps=2)
    out = tiny_teacher / "out-val"
    rows = ablate(str(tiny_teacher / "teacher"), tiny_teacher / "run", out, cfg)
    ref = json.loads((out / "teacher-val.json").read_text())
    assert not (out / "teacher.json").exists()
    assert rows[0]["degradation"] == pytest.approx(degradation(ref, rows[0]))


def test_r_thres_candidates_can_be_distilled_before_they_are_scored(tiny_teacher, sealed_choice):
    cfg = AblateConfig(ratios=(0.3,), methods=("hpp",), r_thres="val", r_thres_steps=1,
                       distill=DistillConfig(steps=5, batch_size=2, checkpoint_every=5),
                       data_size=8, per_category=1, eval_steps=2)
    out = tiny_teacher / "out-rthres-distilled"
    ablate(str(tiny_teacher / "teacher"), tiny_teacher / "run", out, cfg)
    assert len(sealed_choice) == 1  # the choice ran with the test split sealed (conftest's seal_test_split)
    sweep = json.loads((out / "rthres-0.3.json").read_text())
    assert sweep["distill_steps"] == 1
    students = sorted((out / "rthres").iterdir())
    assert len(students) == len({tuple(c["units"]) for c in sweep["candidates"]})
    summary = json.loads((students[0] / "training_summary.json").read_text())
    assert summary["steps"] == 1 and summary["config"]["pwp"]
    with pytest.raises(HpruneError, match="--r-thres-steps"):
        AblateConfig(r_thres_steps=-1)

