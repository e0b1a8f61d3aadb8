"""Stages of `hprune run` on their own: quiet under --no-progress, caches named as `hprune distill` names them."""

import hashlib

import torch

from hprune.runs.context import RunContext
from hprune.folders.run_layout import RunLayout
from hprune.runs.recipe import load_recipe


def test_shapes_data_is_made_without_bars_under_no_progress_and_cached_by_its_key(tmp_path, capfd):
    from hprune.distill.sources import DATA_FILE
    from hprune.runs.stages import _data

    recipe = load_recipe("shapes-cpu", ["data.source=shapes:4"])
    ctx = RunContext(model="shapes-sd3", ratio=0.2, recipe=recipe, layout=RunLayout(tmp_path), device="cpu",
                     progress=False)
    ctx.pipe()
    capfd.readouterr()
    assert len(_data(ctx)) == 4
    assert capfd.readouterr().err == ""
    key = hashlib.sha256(repr(("shapes:4", recipe.data.resolution, recipe.distill.seed)).encode()).hexdigest()[:12]
    assert [p.name for p in ctx.layout.distill.glob("distill_data-*")] == [DATA_FILE.format(key=key)]


def test_casting_a_model_without_float32_modules_says_nothing():
    import logging

    from hprune.runs.stages import cast_
    from hprune.model.testing import tiny_sd3

    said = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    logger = logging.getLogger("diffusers.models.modeling_utils")
    logger.addHandler(handler)
    try:
        model = tiny_sd3(num_layers=1)
        cast_(model, torch.bfloat16)
        assert model.dtype == torch.bfloat16 and said == []
        model._keep_in_fp32_modules = ["norm_out"]  # here diffusers' warning is real: it stays
        cast_(model, torch.float32)
    finally:
        logger.removeHandler(handler)
    assert len(said) == 1 and "should be kept in float32: ['norm_out']" in said[0]
