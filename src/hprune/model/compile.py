"""Regional compilation of a (pruned) transformer: every block compiled, whatever its shape.

diffusers' `compile_repeated_blocks` calls `torch.compile` on each block. All blocks of a class run
the same `forward`, and Dynamo keeps at most `torch._dynamo.config.recompile_limit` (8) compiled
versions of one function: one per block shape it meets. Removing subcomponents gives the blocks of a
class different shapes (a removed attn, a constant norm), so with more than 8 shapes
`fullgraph=True` fails with FailOnRecompileLimitHit, and otherwise the blocks past the limit run
uncompiled, silently. `compile_blocks_` compiles every block and raises the limit so that each
shape keeps the headroom an unpruned model has; `block_shapes` counts the shapes.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from hprune.model import get_adapter

# torch's default limit: what one block shape of an unpruned model gets, for recompiles on new
# resolutions, batch sizes or dtypes. Each distinct shape gets as much.
RECOMPILES_PER_SHAPE = 8


def block_shapes(model: nn.Module) -> dict[str, int]:
    """Block kind -> how many distinct block shapes it has: blocks Dynamo cannot share one
    compiled graph between (different submodule types, parameter shapes or dtypes)."""
    adapter = get_adapter(model)
    return {kind: len({_shape(block) for block in adapter.block_list(model, kind)}) for kind in adapter.block_lists}


def _shape(block: nn.Module) -> tuple:
    own = lambda m: [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]  # noqa: E731
    return tuple((name, type(m).__name__, tuple((n, tuple(t.shape), t.dtype) for n, t in own(m)))
                 for name, m in block.named_modules())


def compile_blocks_(model: nn.Module, **compile_kwargs) -> dict[str, int]:
    """`torch.compile` each transformer block in place (`compile_kwargs` go to torch.compile, e.g.
    `fullgraph=True`, `mode="max-autotune-no-cudagraphs"`), as diffusers' `compile_repeated_blocks`
    does, and raise Dynamo's recompile limit (a process-wide setting; never lowered) to
    RECOMPILES_PER_SHAPE per distinct block shape. Returns `block_shapes(model)`."""
    shapes = block_shapes(model)
    raise_recompile_limit(RECOMPILES_PER_SHAPE * sum(shapes.values()))
    adapter = get_adapter(model)
    for kind in adapter.block_lists:
        for block in adapter.block_list(model, kind):
            block.compile(**compile_kwargs)
    return shapes


def raise_recompile_limit(limit: int) -> None:
    """Dynamo's per-function and total recompile limits at least `limit` (torch < 2.6 names them
    cache_size_limit)."""
    import torch._dynamo  # not imported by `import torch`; only compiling needs it

    config = torch._dynamo.config
    for name, old_name in (("recompile_limit", "cache_size_limit"),
                           ("accumulated_recompile_limit", "accumulated_cache_size_limit")):
        attr = name if hasattr(config, name) else old_name
        setattr(config, attr, max(getattr(config, attr), limit))


def shapes_line(shapes: dict[str, int]) -> str:
    """One line for `hprune inspect` / `hprune prune`, e.g. 'distinct block shapes: joint 9, single 1'."""
    counts = ", ".join(f"{kind} {n}" for kind, n in shapes.items())
    note = f" (more than torch.compile's default {RECOMPILES_PER_SHAPE} per block class: compile with " \
           "hprune.compile_blocks_, not compile_repeated_blocks)" if max(shapes.values()) > RECOMPILES_PER_SHAPE else ""
    return f"distinct block shapes: {counts}{note}"
