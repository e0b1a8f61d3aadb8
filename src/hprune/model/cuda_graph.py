"""Whole-step CUDA graphs for a transformer at inference: one graph per input signature, replayed.

A pruned, 4-bit transformer at batch 1 spends much of a step launching small kernels (the unpack,
the activation quantization, AdaLN's M = 1 GEMMs); replaying the whole step from one CUDA graph
removes that launch time (1.5-3 ms per step on an H200, docs/benchmarks.md). Shapes are static
within a sampling loop, so each distinct signature (tensor shapes, dtypes and devices, and the
values of every non-tensor argument: `return_dict`, skip-layer lists, ...) is captured once, after
two warm-up calls on a side stream (where torch.compile traces), into a memory pool all of the
model's graphs share, and replayed from then on: the call's tensors are copied into the captured
inputs and the outputs are cloned out, so callers may keep them across steps. Calls that cannot be
captured run the model as before: with autograd on, on the CPU, or with an argument that is
neither a tensor nor a hashable value.

    enable_cuda_graphs(pipe.transformer)   # then call the pipeline as usual

Mirrors torch's recipe for whole-network capture (torch.cuda.graphs: warm-up on a side stream,
`torch.cuda.graph` with a shared pool); the model must not change between calls (load LoRAs and
set adapters before enabling; `disable_cuda_graphs` restores the plain forward).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten, tree_map_only, tree_unflatten

WARMUP_CALLS = 2


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: list[torch.Tensor]  # the captured call's tensors, in flattening order
    output: object


class CudaGraphSteps:
    """The model's forward, replayed from one CUDA graph per input signature (see module doc).

    `graphs` maps each captured signature to its graph; `captures` counts captures (one per new
    signature, e.g. a smaller last batch)."""

    def __init__(self, model: nn.Module, forward=None):
        self.model = model
        self.forward = forward or model.forward
        self.graphs: dict[tuple, _Captured] = {}
        self.captures = 0
        self.pool = None

    def __call__(self, *args, **kwargs):
        leaves, spec = tree_flatten((args, kwargs))
        key = signature(leaves, spec)
        if key is None or torch.is_grad_enabled():
            return self.forward(*args, **kwargs)
        captured = self.graphs.get(key) or self._capture(key, leaves, spec)
        for static, value in zip(captured.inputs, (x for x in leaves if isinstance(x, torch.Tensor))):
            static.copy_(value)
        captured.graph.replay()
        return tree_map_only(torch.Tensor, torch.Tensor.clone, captured.output)

    def _capture(self, key: tuple, leaves: list, spec) -> _Captured:
        static = [x.clone() if isinstance(x, torch.Tensor) else x for x in leaves]
        args, kwargs = tree_unflatten(static, spec)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                self.forward(*args, **kwargs)
        torch.cuda.current_stream().wait_stream(side)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            output = self.forward(*args, **kwargs)
        captured = _Captured(graph, [x for x in static if isinstance(x, torch.Tensor)], output)
        self.graphs[key] = captured
        self.captures += 1
        return captured


def signature(leaves: list, spec) -> tuple | None:
    """What a captured graph depends on, or None if a call cannot be captured (a CPU tensor, or a
    non-tensor argument without a hashable value)."""
    parts = []
    for x in leaves:
        if isinstance(x, torch.Tensor):
            if not x.is_cuda:
                return None
            parts.append(("tensor", tuple(x.shape), x.dtype, x.device, x.stride()))
        else:
            try:
                hash(x)
            except TypeError:
                return None
            parts.append(("value", type(x).__name__, x))
    return (str(spec), tuple(parts))


def enable_cuda_graphs(model: nn.Module) -> CudaGraphSteps:
    """Replace `model.forward` (on this instance) by whole-step CUDA graph replay; returns the
    replayer. A no-op wrapper on a model without CUDA parameters (every call runs eagerly).

    Raises nothing at enable time; a capture error surfaces at the first call of that signature."""
    current = model.__dict__.get("forward")
    if isinstance(current, CudaGraphSteps):
        return current
    steps = CudaGraphSteps(model)
    model.forward = steps
    return steps


def disable_cuda_graphs(model: nn.Module) -> None:
    """Back to the plain forward; the graphs and their memory pool are released."""
    if isinstance(model.__dict__.get("forward"), CudaGraphSteps):
        del model.forward
