"""A step's loss values read on the host one step late, so the host never waits for the GPU to drain.

Reading a CUDA tensor's value (`.tolist()`) blocks the host until every kernel queued before it has
run. Read at the end of its own step, the loss leaves the GPU idle at each step boundary while the
host launches the next step's first kernels, and idle again wherever a run of short kernels outpaces
the host: 7.4 ms of a 117 ms step of SD3.5 Large at batch 1 (docs/scale.md, "One GPU at batch 1,
profiled"). Here the values are copied to pinned host memory behind an event, and read after the
next step's kernels are queued: the host runs ahead until CUDA's launch queue is full (at SD3.5
Large's 2,600 kernels a step it then waits inside its launches, `scripts/sync_probe.py`), and the
GPU always has work.

On the CPU the values are read at once (there is nothing to overlap).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import torch


class StepDone(NamedTuple):
    """One step's values back on the host."""

    step: int
    values: list  # the pushed tensor's .tolist()
    # from the end of the step before it (or the clock's start) to its end: GPU time between CUDA
    # events on the current stream on a GPU, the host's clock elsewhere
    seconds: float


class LaggedReadback:
    """Queue one step's loss values (a small float tensor); get them back once the step has run.

    `push(step, values)` queues `values` (any shape; float) and returns the previously queued step
    as a `StepDone`, or None for the first push; each step's time is counted once. `flush()` returns
    the last queued one (None when there is none) and waits for it: call it before anything that
    must see every step logged (a checkpoint, the end), and `restart_clock()` after work that is
    not a step (saving a checkpoint). On a GPU a step's time is measured between CUDA events, as the
    host's own clock, a step ahead, only sees when it could queue more work.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._pending: tuple[int, torch.Tensor, object] | None = None
        self._start = self._now()

    def push(self, step: int, values: torch.Tensor) -> StepDone | None:
        ready = self.flush()
        if self.cuda:
            host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            host.copy_(values.detach(), non_blocking=True)
        else:
            host = values.detach().clone()  # the caller may change its tensor in place
        self._pending = (step, host, self._now())  # after the copy and the step's kernels
        return ready

    def restart_clock(self) -> None:
        self._start = self._now()

    def flush(self) -> StepDone | None:
        if self._pending is None:
            return None
        step, host, end = self._pending
        self._pending = None
        if self.cuda:
            end.synchronize()
            seconds = self._start.elapsed_time(end) / 1e3
        else:
            seconds = end - self._start
        self._start = end
        return StepDone(step, host.tolist(), seconds)

    def _now(self):
        """A point in time: a CUDA event recorded on the current stream, or the host's clock."""
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
