"""Distillation on several processes (`accelerate launch --num_processes N hprune distill ...`).

`--batch-size` is the global batch: every process draws the same global batch from
(seed, step) and trains on its own contiguous slice, and the gradients are averaged, so
N processes follow the loss curve of one (to float rounding) and a run killed on N
processes resumes on any number that divides the batch.

Two strategies, `DistillConfig.strategy`:
  ddp   (the default) the student replicated, gradients all-reduced. PWP trains only the
        blocks after the first removed one (1.00B of SD3.5 Large's 6.35B student weights at
        20%), so a replica fits and needs no all-gathers in forward or backward.
  fsdp  the student sharded with FSDP2 (torch's `fully_shard`), one shard unit per block (the
        model's `_no_split_modules`), then the rest: for a whole student (no PWP) whose
        weights, gradients and Adam state do not fit one GPU. torch's own call rather than
        accelerate's FullyShardedDataParallelPlugin(fsdp_version=2): accelerate 1.15 turns
        FSDP on for GPUs only, and the CPU tests (gloo) must run the same code.
The frozen teacher is replicated in both: it has no gradients or optimizer state to shard.
Checkpoints hold full (unsharded) tensors in one layout for every strategy and process count.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hprune.distill.checkpoint import latest_checkpoint, save_checkpoint
from hprune.distill.data import Batch
from hprune.core.errors import HpruneError


def process_state():
    """accelerate's PartialState: this process's rank and the number of processes. Without a
    GPU the processes `accelerate launch` starts talk over gloo (as the CPU tests do)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def make_accelerator(cfg):
    """The Accelerator of `cfg` (DDP when several processes run; FSDP is `shard_`'s)."""
    from accelerate import Accelerator

    cpu = not torch.cuda.is_available()
    state = process_state()
    if cfg.batch_size % state.num_processes:
        raise HpruneError(f"--batch-size {cfg.batch_size} (the global batch) must be a multiple of the "
                          f"{state.num_processes} processes; pass a multiple of {state.num_processes}.")
    return Accelerator(mixed_precision=cfg.mixed_precision, cpu=cpu)


def wants_sharding(accelerator, cfg) -> bool:
    return cfg.strategy == "fsdp" and accelerator.num_processes > 1


def shard_(student, groups: list[dict], accelerator) -> list[dict]:
    """FSDP2 in place: each block (a class in `_no_split_modules`) one unit, the root the rest.
    Returns `groups` with the sharded parameters (fully_shard replaces them) for the optimizer."""
    from torch.distributed.device_mesh import init_device_mesh

    try:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    except ImportError:
        raise HpruneError(f"--strategy fsdp needs FSDP2 (torch >= 2.6, this is {torch.__version__}); "
                          "upgrade torch or use --strategy ddp.") from None

    names = {id(p): name for name, p in student.named_parameters()}
    mesh = init_device_mesh(accelerator.device.type, (accelerator.num_processes,))
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(accelerator.mixed_precision)
    # gathered in the compute precision, gradients reduced in float32
    policy = MixedPrecisionPolicy(param_dtype=low, reduce_dtype=torch.float32 if low else None)
    blocks = tuple(getattr(student, "_no_split_modules", None) or ())
    for module in student.modules():
        if type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh, mp_policy=policy)
    fully_shard(student, mesh=mesh, mp_policy=policy)
    now = dict(student.named_parameters())
    return [{**g, "params": [now[names[id(p)]] for p in g["params"]]} for g in groups]


def sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def clip_grad_norm_(accelerator, model, max_norm: float) -> None:
    """Clip by the norm of all gradients (frozen weights have none); over the shards with FSDP2."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not sharded(model):
        accelerator.clip_grad_norm_(params, max_norm)
        return
    from torch.distributed.tensor import DTensor
    from torch.nn.utils import clip_grads_with_norm_, get_total_norm

    total = get_total_norm([p.grad for p in params])
    total = total.full_tensor() if isinstance(total, DTensor) else total
    clip_grads_with_norm_(params, max_norm, total)


def local_slice(batch: Batch, accelerator) -> Batch:
    """This process's contiguous share of the global batch."""
    n = len(batch.x0) // accelerator.num_processes
    part = slice(accelerator.process_index * n, (accelerator.process_index + 1) * n)
    return Batch(*(getattr(batch, k)[part] for k in ("x0", "seq", "pooled", "noise", "sigma")))


def _names(wrapped, optimizer) -> list[str]:
    """The parameter names in the optimizer's order: its state_dict's integer keys."""
    by_id = {id(p): name for name, p in wrapped.named_parameters()}
    return [by_id[id(p)] for group in optimizer.param_groups for p in group["params"]]


class _Fixed:
    """A state dict already gathered, handed to save_checkpoint as if it were the module."""

    def __init__(self, state: dict):
        self._state = state

    def state_dict(self) -> dict:
        return self._state


def save(accelerator, root: Path, step: int, student, wrapped, optimizer, ema) -> None:
    """Write the checkpoint after `step` from the main process. With FSDP every process
    takes part in gathering the full tensors first."""
    if not sharded(wrapped):
        if accelerator.is_main_process:
            save_checkpoint(root, step, student, optimizer, ema)
        return
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(wrapped, options=options)
    by_name = get_optimizer_state_dict(wrapped, _inner(optimizer), options=options)
    if accelerator.is_main_process:
        save_checkpoint(root, step, _Fixed(model_state), _Fixed(_indexed(by_name, _names(wrapped, optimizer))))
    accelerator.wait_for_everyone()


def load_sharded(root: Path, wrapped, optimizer) -> int:
    """Restore the latest checkpoint into an FSDP2 student and its optimizer; the step reached."""
    import json

    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    ckpt = latest_checkpoint(root)
    if ckpt is None:
        return 0
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(wrapped, load_file(str(ckpt / "student.safetensors")), options=options)
    indexed = torch.load(ckpt / "optimizer.pt", weights_only=True)
    set_optimizer_state_dict(wrapped, _inner(optimizer), _named(indexed, _names(wrapped, optimizer)), options=options)
    return json.loads((ckpt / "state.json").read_text())["step"]


def _inner(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps it


def _indexed(by_name: dict, names: list[str]) -> dict:
    """A full optimizer state keyed by parameter name -> torch's own layout (keys 0..n-1)."""
    index = {name: i for i, name in enumerate(names)}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in by_name["param_groups"]]
    return {"state": {index[n]: s for n, s in by_name["state"].items()}, "param_groups": groups}


def _named(indexed: dict, names: list[str]) -> dict:
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in indexed["param_groups"]]
    return {"state": {names[int(i)]: s for i, s in indexed["state"].items()}, "param_groups": groups}


def plain_student(accelerator, wrapped, rebuild):
    """The trained student as an ordinary module on every process: unwrapped (DDP), or
    rebuilt by `rebuild()` and filled with the gathered full weights (FSDP2)."""
    if not sharded(wrapped):
        return accelerator.unwrap_model(wrapped)
    from torch.distributed.tensor import DTensor

    # gathered one tensor at a time into CPU memory: a whole float32 student at once may not fit a GPU
    full = {name: (t.full_tensor() if isinstance(t, DTensor) else t).cpu() for name, t in wrapped.state_dict().items()}
    student = rebuild()
    student.load_state_dict(full)
    trainable = {name for name, p in wrapped.named_parameters() if p.requires_grad}
    for name, p in student.named_parameters():
        p.requires_grad_(name in trainable)
    return student
