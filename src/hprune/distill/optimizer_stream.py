"""The optimizer step on a second CUDA stream, beside the next step's teacher forward.

Gradient clipping and fused AdamW read and write every trained float32 parameter, its gradient and
two states: about 28 GB per step for SD3.5 Large's 1.00B PWP-trained parameters, 11.5 ms on an H200
whatever the batch (docs/scale.md, "One GPU at batch 1, profiled"), 10% of a batch-1 step. The
teacher never reads the student's weights, so nothing orders that work before the next step's
teacher forward: it runs on its own stream, and only the student's next forward waits for it. The
same kernels run on the same tensors in the same order, so losses and weights are those of the
serial loop, bit for bit.

Off the GPU (or when the loop shards the student) `OptimizerStream(None)` runs the step inline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


class OptimizerStream:
    """Run `step` closures on a side CUDA stream of `device`; `wait()` orders the current stream after them.

    Usage per training step: `wait()` before the student's forward, `run(step, params)` after its
    backward. `params`' gradients are marked as used on the side stream, so that their memory, freed
    by `zero_grad(set_to_none=True)` inside `step`, is not handed to the main stream's next
    allocations before the side stream is done with it (torch.Tensor.record_stream).
    """

    def __init__(self, device: torch.device | None):
        self.stream = torch.cuda.Stream(device) if device is not None and device.type == "cuda" else None
        self._done: torch.cuda.Event | None = None

    def run(self, step: Callable[[], None], params: Iterable[torch.nn.Parameter]) -> None:
        if self.stream is None:
            step()
            return
        main = torch.cuda.current_stream(self.stream.device)
        self.stream.wait_stream(main)  # the backward that wrote the gradients comes first
        for p in params:
            if p.grad is not None:
                p.grad.record_stream(self.stream)
        with torch.cuda.stream(self.stream):
            step()
        self._done = torch.cuda.Event()
        self._done.record(self.stream)

    def wait(self) -> None:
        """The current stream waits for the last step run (the host does not)."""
        if self._done is not None:
            torch.cuda.current_stream(self.stream.device).wait_event(self._done)
            self._done = None
