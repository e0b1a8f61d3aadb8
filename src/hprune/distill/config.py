"""The distillation settings, validated once, written beside every result."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hprune.core.errors import HpruneError

OPTIMIZERS = ("adamw", "sgd", "adamw8bit")  # adamw8bit: bitsandbytes' AdamW8bit, on a CUDA GPU
# How `accelerate launch --num_processes N` spreads the student (hprune.distill.parallel).
STRATEGIES = ("ddp", "fsdp")
STRATEGY_HELP = ("with several processes: ddp replicates the student (the default: PWP trains a small part, and "
                 "replicas need no gathers), fsdp shards it with FSDP2 (for a whole student that does not fit)")
SG_SCALES = ("inverse", "linear", "binary")  # hprune.distill.freeze.sgdistill_scales
SG_SCALE_HELP = "SGDistill's scale: min-max of 1/dP (the paper's), of -dP, or 0/1 (sensitive half frozen)"
SG_GRANULARITIES = ("block", "subcomponent")
SG_GRANULARITY_HELP = ("SGDistill's unit: one scale per block (DESIGN.md), or one per surviving subcomponent "
                       "from its own dP (the paper's dP(i, c))")
PRECISIONS = ("no", "bf16", "fp16")


@dataclass
class DistillConfig:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-4
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    # L = kd_weight * L_KD + feat_weight * L_feat. The paper adds them with weight 1; the
    # authors' code uses feat_weight 1e-4, and so do we: chosen on the val split (HPP+PWP 20%
    # on shapes-sd3 degrades 14.9% with 1e-4 against 35.0% with 1; docs/results.md).
    kd_weight: float = 1.0
    feat_weight: float = 1e-4
    pwp: bool = False
    # Intact blocks before this forward position stay frozen (a block that lost a part
    # trains); None = the position of the plan's first whole removed block.
    pwp_boundary: int | None = None
    sgdistill: bool = False
    sg_scale: str = "inverse"  # one of SG_SCALES
    sg_granularity: str = "block"  # one of SG_GRANULARITIES
    checkpoint_every: int = 200
    seed: int = 0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    compile: bool = False  # torch.compile every block of teacher and student
    # the student's frozen first blocks replay the teacher's output instead of running (hprune.distill.prefix)
    share_prefix: bool = True
    # clipping and the optimizer step run on a second CUDA stream beside the next teacher forward
    # (hprune.distill.optimizer_stream); the same results, bit for bit
    overlap_optimizer: bool = True
    strategy: str = "ddp"  # one of STRATEGIES; batch_size is the global batch, split over the processes
    ema_decay: float | None = None
    # logit-normal timestep sampling, as SD3 trains (mean, std of the logit)
    logit_mean: float = 0.0
    logit_std: float = 1.0

    def __post_init__(self):
        problems = []
        if self.steps < 1:
            problems.append(f"--steps must be at least 1 (got {self.steps})")
        if self.batch_size < 1:
            problems.append(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.lr <= 0:
            problems.append(f"--lr must be positive (got {self.lr})")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"--optimizer must be one of {OPTIMIZERS} (got '{self.optimizer}')")
        if self.sg_scale not in SG_SCALES:
            problems.append(f"--sg-scale must be one of {SG_SCALES} (got '{self.sg_scale}')")
        if self.sg_granularity not in SG_GRANULARITIES:
            problems.append(f"--sg-granularity must be one of {SG_GRANULARITIES} (got '{self.sg_granularity}')")
        if self.mixed_precision not in PRECISIONS:
            problems.append(f"--mixed-precision must be one of {PRECISIONS} (got '{self.mixed_precision}')")
        if self.strategy not in STRATEGIES:
            problems.append(f"--strategy must be one of {STRATEGIES} (got '{self.strategy}')")
        elif self.strategy == "fsdp" and self.ema_decay is not None:
            problems.append("--ema-decay works with --strategy ddp only (an EMA of sharded weights is not built yet)")
        if self.optimizer == "adamw8bit" and not _adamw8bit_available():
            problems.append("--optimizer adamw8bit needs the bitsandbytes package (pip install bitsandbytes) and a "
                            "CUDA GPU; use --optimizer adamw here")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            problems.append(f"--ema-decay must be in (0, 1) (got {self.ema_decay})")
        if self.checkpoint_every < 1:
            problems.append(f"--checkpoint-every must be at least 1 (got {self.checkpoint_every})")
        if problems:
            raise HpruneError("; ".join(problems) + ".")

    def to_dict(self) -> dict:
        return asdict(self)


def _adamw8bit_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        return False
    import torch  # only for adamw8bit: building the settings stays light otherwise

    return torch.cuda.is_available()
