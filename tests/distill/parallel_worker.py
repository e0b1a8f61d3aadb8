"""One process of test_parallel's distillation runs, started by `accelerate launch` (gloo on CPU).

For each strategy: a whole run, a run stopped in step 6 (after the checkpoint of step 4) and
its resume on the same processes. The stopped run's folder is first copied for the test to
resume on one process. Not collected by pytest (no test_ prefix).
"""

import shutil
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from safetensors.torch import save_file

from test_loop import _count_teacher_calls, _Stopped, sd3_data  # this folder is sys.path[0]
from hprune.planning.plan import Plan
from hprune.distill import DistillConfig, distill
from hprune.model.testing import tiny_sd3

STEPS, BATCH, EVERY, STOP_IN_STEP = 8, 8, 4, 6
STUDENT = "student.safetensors"  # the returned student's weights, beside the run's loss.csv


def config(strategy: str) -> DistillConfig:
    return DistillConfig(steps=STEPS, batch_size=BATCH, lr=3e-3, checkpoint_every=EVERY, pwp=True,
                         strategy=strategy)


def plan():
    teacher = tiny_sd3(num_layers=4)
    return Plan.for_model(teacher, ["joint.1"])  # PWP freezes joint.0


def main(root: Path, strategies: list[str]) -> None:
    torch.set_num_threads(1)
    state = PartialState(cpu=True)
    data = sd3_data(16)
    for strategy in strategies:
        cfg = config(strategy)
        _run(state, root / f"{strategy}-whole", data, cfg)
        teacher = tiny_sd3(num_layers=4)
        _count_teacher_calls(teacher, stop_at=STOP_IN_STEP + 1)
        try:
            distill(teacher, plan(), data, cfg, root / f"{strategy}-stopped", progress=False)
        except _Stopped:
            pass
        state.wait_for_everyone()
        if state.is_main_process:
            shutil.copytree(root / f"{strategy}-stopped", root / f"{strategy}-stopped-for-one")
        state.wait_for_everyone()
        _run(state, root / f"{strategy}-stopped", data, cfg, resume=True)


def _run(state, out: Path, data, cfg, resume=False) -> None:
    student = distill(tiny_sd3(num_layers=4), plan(), data, cfg, out, resume=resume, progress=False)
    if state.is_main_process:
        save_file(student.state_dict(), str(out / STUDENT))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2].split(","))
