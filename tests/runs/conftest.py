"""A tiny real SD3 pipeline and CLIP on disk, and a recipe sized for them (seconds a run)."""

import pytest

TINY_RECIPE = """
[analysis]
n_prompts = 2
steps = 1
size = 16
max_sequence_length = 16
batch_size = 2

[plan]
r_thres = 0.05

[distill]
steps = 4
batch_size = 2
checkpoint_every = 2
pwp = true

[data]
source = "teacher:4"
resolution = 16

[evaluate]
n_prompts = 2
steps = 1
batch_size = 2
"""


@pytest.fixture(scope="session")
def tiny_run_inputs(tmp_path_factory):
    """(pipeline folder, recipe file) for `hprune run` on a 4-block SD3 with a tiny CLIP metric."""
    from hprune.testing import save_tiny_clip, tiny_pipeline, tiny_sd3

    root = tmp_path_factory.mktemp("run-inputs")
    tiny_pipeline("sd3", transformer=tiny_sd3(num_layers=4)).save_pretrained(root / "sd3")
    clip = save_tiny_clip(root / "clip")
    recipe = root / "tiny.toml"
    recipe.write_text(TINY_RECIPE.replace("[analysis]", f'[analysis]\nmetric = "clip:{clip}"'))
    return root / "sd3", recipe
