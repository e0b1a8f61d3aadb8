"""A tiny real SD3 pipeline and CLIP on disk, a recipe sized for them (seconds a run), and runs
in their own processes to kill -9."""

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
    from hprune.model.testing import save_tiny_clip, tiny_pipeline, tiny_sd3

    root = tmp_path_factory.mktemp("run-inputs")
    tiny_pipeline("sd3", transformer=tiny_sd3(num_layers=4)).save_pretrained(root / "sd3")
    clip = save_tiny_clip(root / "clip")
    recipe = root / "tiny.toml"
    recipe.write_text(TINY_RECIPE.replace("[analysis]", f'[analysis]\nmetric = "clip:{clip}"'))
    return root / "sd3", recipe


_CHILD = """
import multiprocessing, os, sys
quiet = os.open(os.devnull, os.O_WRONLY)
os.dup2(quiet, 1), os.dup2(quiet, 2)
os.environ.update({env!r})
multiprocessing.set_start_method("fork", force=True)  # as in `hprune run`: no named locks to leak when killed
from hprune.cli import main
sys.exit(main({argv!r}))
"""
# What a run imports: the process server imports it once, so each run's process starts warm.
_PRELOAD = ["hprune.cli", "hprune.runs.stages", "hprune.runs.runner", "hprune.analysis.profile", "hprune.folders",
            "hprune.distill", "hprune.metrics", "hprune.toy.pipeline", "hprune.report.run_page",
            "diffusers.pipelines.stable_diffusion_3"]


@pytest.fixture(scope="session")
def start_run():
    """start_run(argv, env) -> a started process running `hprune ARGV` with `env` added, to kill -9 as a
    user would. Each is forked from a server process that imported the libraries and ran nothing
    (multiprocessing's forkserver): on 2 cores that saves some 8 s of imports a process."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)

    def start(argv, env=None):
        code = _CHILD.format(env=env or {}, argv=[str(a) for a in argv])
        process = context.Process(target=exec, args=(code, {}))
        process.start()
        return process

    return start
