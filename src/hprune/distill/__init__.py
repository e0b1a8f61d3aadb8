"""Stage 2 of HierarchicalPrune: distill the pruned student from its teacher,
with Positional Weight Preservation (PWP) and Sensitivity-Guided Distillation
(SGDistill)."""

from hprune.distill.config import DistillConfig

__all__ = ["DistillConfig", "distill"]


def __getattr__(name: str):
    # The training loop (torch) loads on first use, so reading the settings in
    # hprune.distill.config (as `hprune distill --help` does) stays light.
    if name == "distill":
        from hprune.distill.loop import distill

        return distill
    raise AttributeError(f"module 'hprune.distill' has no attribute '{name}'")
