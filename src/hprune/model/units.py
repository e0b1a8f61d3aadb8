"""Units: the things a plan can remove, named the same way everywhere.

A unit is `(kind, index, sub)`: block kind (`joint` for SD3/SD3.5 blocks and
FLUX double-stream blocks, `single` for FLUX single-stream blocks), the block's
index in the *original* model, and the subcomponent (`block` for the whole
block). Its text form is `joint.12.attn`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hprune.core.errors import HpruneError

BLOCK = "block"
KINDS = ("joint", "single")
# Subcomponents, named after the paper. `attn2` exists only in SD3.5 Medium's
# dual-attention blocks.
JOINT_SUBS = ("norm", "context_norm", "attn", "attn2", "mlp", "context_mlp")
SINGLE_SUBS = ("norm", "attn", "mlp_proj")
NORM_SUBS = ("norm", "context_norm")
NORM_MODES = ("mean", "identity")
# Which single units a contribution analysis removes (`hprune profile --scope`).
SCOPES = ("all", "blocks", "subcomponents")


@dataclass(frozen=True, order=True)
class Unit:
    kind: str
    index: int
    sub: str = BLOCK

    @property
    def key(self) -> str:
        return f"{self.kind}.{self.index}.{self.sub}"

    @property
    def is_block(self) -> bool:
        return self.sub == BLOCK

    @property
    def is_norm(self) -> bool:
        return self.sub in NORM_SUBS

    def block_unit(self) -> "Unit":
        return Unit(self.kind, self.index, BLOCK)

    def __str__(self) -> str:
        return self.key

    @classmethod
    def parse(cls, text: str) -> "Unit":
        """`joint.12.attn`, `single.3` (whole block) or `joint.12.block`."""
        parts = text.strip().split(".")
        if len(parts) == 2:
            parts.append(BLOCK)
        valid = len(parts) == 3 and parts[0] in KINDS and parts[1].isdigit()
        subs = JOINT_SUBS if parts[0] == "joint" else SINGLE_SUBS
        if not valid or parts[2] not in (BLOCK, *subs):
            raise HpruneError(
                f"'{text}' is not a unit name; write KIND.INDEX[.SUB] with KIND in {KINDS} "
                f"and SUB in {(BLOCK, *JOINT_SUBS)} (joint) or {(BLOCK, *SINGLE_SUBS)} (single), e.g. joint.12.attn."
            )
        return cls(parts[0], int(parts[1]), parts[2])
