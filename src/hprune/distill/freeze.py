"""Which student weights train, and how fast: PWP and SGDistill.

PWP "freezes the non-pruned and earlier portions of the model during the
distillation process" (paper, Sec. 2.2 and Algorithm 1, line 2). HPP removes
whole blocks first (up to `r_thres`), then subcomponents, so the boundary is
the first position of a block the plan removes *whole*:

- a block before it that lost nothing is non-pruned and earlier: frozen, and
  so are the input embedders in front of it;
- a block before it that lost a subcomponent is no longer non-pruned: it
  trains, so a damaged early block can adapt to its loss;
- every block from the boundary on trains.

A plan of subcomponents only has no boundary: every intact block stays
frozen. `--pwp-boundary` moves the boundary, never the rule for damaged blocks.

SGDistill scales each trainable block's learning rate by its inverse
sensitivity 1/dP, min-max normalised so the least sensitive block trains at
the full rate and the most important one not at all; it never unfreezes a
block PWP froze. At `subcomponent` granularity each surviving subcomponent of
a trainable block gets its own scale from its own dP(i, c), the paper's
"intra-block sensitivity": a damaged block can adapt its MLPs while its
attention stays put. With Adam, scaling gradients would change nothing (Adam divides the
scale out), so the scale is applied as a per-parameter-group learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from hprune.model import get_adapter
from hprune.model.base import count_params
from hprune.model.units import Unit
from hprune.core.errors import HpruneError

# Non-block modules after the last block; everything else outside blocks is an input embedder.
OUTPUT_MODULES = ("norm_out", "proj_out")


@dataclass
class MatchedBlock:
    unit: Unit          # the block's unit in the original (teacher) model
    position: int       # forward position in the original model
    student: nn.Module
    teacher: nn.Module
    parts: dict[str, nn.Module]  # the student block's subcomponents that still hold weights
    damaged: bool = False  # the plan removed one of its subcomponents

    def part_key(self, sub: str) -> str:
        return Unit(self.unit.kind, self.unit.index, sub).key


def position(unit: Unit, arch: dict) -> int:
    return unit.index if unit.kind == "joint" else arch["num_layers"] + unit.index


def kept_indices(plan, kind: str) -> list[int]:
    count = plan.arch["num_layers"] if kind == "joint" else plan.arch.get("num_single_layers", 0)
    gone = {u.index for u in plan.units if u.is_block and u.kind == kind}
    return [i for i in range(count) if i not in gone]


def match_blocks(student, teacher, plan) -> list[MatchedBlock]:
    """Student block j of each kind <-> the teacher block it was cut from."""
    adapter = get_adapter(teacher)
    damaged = {u.block_unit() for u in plan.units if not u.is_block}
    matched = []
    for kind in adapter.block_lists:
        s_blocks, t_blocks = adapter.block_list(student, kind), adapter.block_list(teacher, kind)
        for j, original in enumerate(kept_indices(plan, kind)):
            unit = Unit(kind, original)
            parts = {sub: module for sub, module in adapter.part_modules(s_blocks[j], kind).items()
                     if count_params(module)}
            matched.append(MatchedBlock(unit, position(unit, plan.arch), s_blocks[j], t_blocks[original], parts,
                                        damaged=unit in damaged))
    return matched


def pwp_boundary(plan, override: int | None) -> int:
    """`override`, or the forward position of the first block the plan removes whole
    (a removed subcomponent does not move it: see `pwp_freezes`)."""
    if override is not None:
        return override
    return min((position(u, plan.arch) for u in plan.units if u.is_block), default=10**9)


def pwp_freezes(m: MatchedBlock, boundary: int) -> bool:
    """Non-pruned and earlier: before the boundary and intact. A damaged early block
    trains, or PWP would pin the very block that has to make up for its lost part."""
    return m.position < boundary and not m.damaged


def sgdistill_scales(sensitivity: dict[str, float], kind: str = "inverse") -> dict[str, float]:
    """Min-max normalised 1/dP (`inverse`, the design's) or -dP (`linear`), or `binary`.

    For `inverse`, dP at or below 1% of the largest is floored there. Even so
    1/dP is heavy-tailed: one block with a small dP sets the top of the range
    and squeezes the rest towards 0 (on shapes-flux most blocks got < 0.1).
    `linear` keeps the same order and end points with even spacing in dP.
    `binary` is the authors' scripts' form: the more sensitive half (dP above
    the median) is frozen, the rest trains at the full rate, so no block is starved.
    """
    if not sensitivity:
        return {}
    if kind == "binary":
        median = sorted(sensitivity.values())[(len(sensitivity) - 1) // 2]
        return {k: 1.0 if v <= median else 0.0 for k, v in sensitivity.items()}
    if kind == "inverse":
        top = max(max(sensitivity.values()), 1e-12)
        raw = {k: 1.0 / max(v, 0.01 * top) for k, v in sensitivity.items()}
    else:
        raw = {k: -v for k, v in sensitivity.items()}
    lo, hi = min(raw.values()), max(raw.values())
    if hi - lo < 1e-12:
        return {k: 1.0 for k in raw}
    return {k: (v - lo) / (hi - lo) for k, v in raw.items()}


def block_scales(matched, boundary: int, pwp: bool, sensitivity: dict[str, float] | None,
                 kind: str = "inverse", granularity: str = "block") -> dict[str, float]:
    """Unit key -> learning-rate scale: every block, and at `subcomponent` granularity also
    every part of a trainable block (a block's own scale then covers only weights in no part)."""
    # SGDistill scales only what PWP left trainable: it never unfreezes a block PWP froze.
    trainable = [m for m in matched if not (pwp and pwp_freezes(m, boundary))]
    scales = {m.unit.key: (1.0 if m in trainable else 0.0) for m in matched}
    if sensitivity is not None:
        keys = [m.unit.key for m in trainable]
        scales.update(sgdistill_scales(_dp(sensitivity, keys), kind))
        if granularity == "subcomponent":
            parts = [m.part_key(sub) for m in trainable for sub in m.parts]
            scales.update(sgdistill_scales(_dp(sensitivity, parts), kind))
    return scales


def _dp(sensitivity: dict[str, float], keys: list[str]) -> dict[str, float]:
    missing = [k for k in keys if k not in sensitivity]
    if missing:
        raise HpruneError(f"the sensitivity table has no dP for {', '.join(missing[:5])}; "
                          "run `hprune profile` on the teacher and pass its contribution.jsonl.")
    return {k: sensitivity[k] for k in keys}


def trains(m: MatchedBlock, scales: dict[str, float]) -> bool:
    """Whether any weight of the block trains (its feature loss then counts)."""
    return scales[m.unit.key] > 0 or any(scales.get(m.part_key(sub), 0.0) > 0 for sub in m.parts)


def param_groups(student, matched, scales: dict[str, float], lr: float, pwp: bool) -> list[dict]:
    """Optimizer groups; frozen weights get requires_grad False and no group."""
    in_blocks = set()
    groups = []
    for m in matched:
        for key, params in _pieces(m, scales):
            in_blocks.update(id(p) for p in params)
            scale = scales[key]
            for p in params:
                p.requires_grad_(scale > 0)
            if scale > 0 and params:
                groups.append({"params": params, "lr": lr * scale, "name": key, "scale": scale})
    rest = [(n, p) for n, p in student.named_parameters() if id(p) not in in_blocks]
    for name, p in rest:
        p.requires_grad_(not pwp or name.startswith(OUTPUT_MODULES))
    trainable_rest = [p for _, p in rest if p.requires_grad]
    if trainable_rest:
        groups.append({"params": trainable_rest, "lr": lr, "name": "embedders+output", "scale": 1.0})
    return groups


def _pieces(m: MatchedBlock, scales: dict[str, float]) -> list[tuple[str, list]]:
    """(scale key, parameters): the parts that have their own scale, then the rest of the block."""
    pieces = [(m.part_key(sub), list(module.parameters())) for sub, module in m.parts.items()
              if m.part_key(sub) in scales]
    taken = {id(p) for _, params in pieces for p in params}
    return pieces + [(m.unit.key, [p for p in m.student.parameters() if id(p) not in taken])]
