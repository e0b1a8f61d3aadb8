"""Stage 2 of HierarchicalPrune: distill the pruned student from its teacher,
with Positional Weight Preservation (PWP) and Sensitivity-Guided Distillation
(SGDistill)."""

from hprune.distill.config import DistillConfig
from hprune.distill.loop import distill

__all__ = ["DistillConfig", "distill"]
