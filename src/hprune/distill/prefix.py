"""The frozen prefix computed once: the student's first blocks replay the teacher's.

Under PWP the student's blocks in front of the first trained one are unchanged copies of the
teacher's first blocks (same weights, same dtype, frozen), and so are its input embedders. Fed
the same noisy latents, timesteps and text embeddings as the teacher in the same step, they
compute exactly what the teacher's first blocks just computed. So the student's prefix blocks
return the teacher's output of the last prefix block instead of running: the loss and every
gradient are unchanged, and a step skips that much of the student's forward (for SD3.5 Large
with the authors' 20% plan, 25 of the student's 30 blocks).

Used by `hprune.distill.loop.distill` (DistillConfig.share_prefix) around its training steps,
with the teacher's forward always before the student's.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch.nn as nn

from hprune.distill.freeze import OUTPUT_MODULES, MatchedBlock


def shared_prefix(student: nn.Module, matched: list[MatchedBlock]) -> list[MatchedBlock]:
    """The matched blocks, in forward order, that the student may replay from the teacher: the run
    from the first block up to the first one with a trainable weight (call after param_groups) or
    one that lost a subcomponent, each at its original position. Empty
    where an input embedder trains (the prefix then sees other inputs than the teacher's)."""
    in_blocks = {id(p) for m in matched for p in m.student.parameters()}
    embedders_train = any(p.requires_grad for name, p in student.named_parameters()
                          if id(p) not in in_blocks and not name.startswith(OUTPUT_MODULES))
    if embedders_train:
        return []
    prefix = []
    for index, m in enumerate(sorted(matched, key=lambda m: m.position)):
        # a damaged block differs from its teacher block even when nothing in it trains (SGDistill's scale 0)
        if m.position != index or m.damaged or any(p.requires_grad for p in m.student.parameters()):
            break
        prefix.append(m)
    return prefix


@contextmanager
def replay_prefix(prefix: list[MatchedBlock]):
    """Within the block: the teacher's last prefix block records its output, and each student prefix
    block returns that output without running (uncompiled, so that the replay is not traced).
    On exit the blocks are restored. A no-op for an empty prefix."""
    if not prefix:
        yield
        return
    record: dict[str, object] = {}
    handle = prefix[-1].teacher.register_forward_hook(lambda _m, _args, output: record.__setitem__("out", output))
    compiled = {id(m.student): getattr(m.student, "_compiled_call_impl", None) for m in prefix}
    for m in prefix:
        m.student._compiled_call_impl = None
        m.student.forward = lambda *args, **kwargs: _recorded(record)
    try:
        yield
    finally:
        handle.remove()
        for m in prefix:
            del m.student.forward
            m.student._compiled_call_impl = compiled[id(m.student)]


def _recorded(record: dict):
    if "out" not in record:
        raise RuntimeError("the student's shared prefix ran before the teacher's forward had recorded its output")
    return record["out"]
