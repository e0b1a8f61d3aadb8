"""Rank removable units and turn a ranking into a pruning plan.

Four rankers share one greedy selector, so that plans made by different
methods for the same ratio remove the same parameter count within one unit:

- `hpp`: HierarchicalPrune's position-aware score (DESIGN.md 1.2);
- `koala`: cosine similarity of a block's input and output hidden states
  (least change is pruned first);
- `bkscore`: BK-SDM's drop of a text-image alignment score (CLIP score on real
  models, the semantic score on the shapes testbed);
- `lastk`: the last blocks in forward order.

Everything here is pure logic over files that `hprune profile` writes: the
unit table of the model (`units.json`), the contribution table
(`contribution.jsonl`) and the block similarities (`similarity.json`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from hprune.arch.units import Unit
from hprune.errors import HpruneError
from hprune.files import read_jsonl
from hprune.plan import Plan, check_ratio

RANKERS = ("hpp", "koala", "bkscore", "lastk")
# The paper's alphas (appendix A.2): SD3.5 Large Turbo 0.55, FLUX.1-schnell 0.01.
PAPER_ALPHA = {"sd3": 0.55, "flux": 0.01}
DEFAULT_R_THRES = 0.25


@dataclass(frozen=True)
class ModelUnits:
    """What a plan needs to know about a model, without loading it."""

    family: str
    arch: dict
    total_params: int
    blocks: tuple[str, ...]  # whole-block unit keys, in forward order
    params: dict[str, int]  # unit key -> parameters it removes (blocks and subcomponents)

    @classmethod
    def from_model(cls, model) -> "ModelUnits":
        from hprune.arch import get_adapter

        ad = get_adapter(model)
        return cls(
            family=ad.family,
            arch=ad.signature(model),
            total_params=int(ad.total_params(model)),
            blocks=tuple(u.key for u, _ in ad.blocks(model)),
            params={info.unit.key: int(info.params) for info in ad.units(model)},
        )

    def position(self, key: str) -> int:
        """Forward position of the block that holds unit `key` (0 = first block)."""
        return self._positions[Unit.parse(key).block_unit().key]

    @property
    def _positions(self) -> dict[str, int]:
        return {key: i for i, key in enumerate(self.blocks)}

    def to_dict(self) -> dict:
        return {"family": self.family, "arch": self.arch, "total_params": self.total_params,
                "blocks": list(self.blocks), "params": self.params}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelUnits":
        return cls(data["family"], data["arch"], int(data["total_params"]), tuple(data["blocks"]),
                   {k: int(v) for k, v in data["params"].items()})

    @classmethod
    def load(cls, path: str | Path) -> "ModelUnits":
        path = Path(path)
        if not path.is_file():
            raise HpruneError(f"{path} does not exist; run `hprune profile` for this model first.")
        return cls.from_dict(json.loads(path.read_text()))


@dataclass
class PlanConfig:
    method: str
    ratio: float
    alpha: float | None = None  # hpp only; None = the paper's value for the family
    r_thres: float = DEFAULT_R_THRES  # hpp only: whole blocks up to here, then subcomponents
    norm_mode: str = "identity"
    alignment: str = "semantic"  # bkscore: the per-metric drop that plays CLIP score's role

    def __post_init__(self):
        if self.method not in RANKERS:
            raise HpruneError(f"method '{self.method}' is unknown; choose one of {', '.join(RANKERS)}.")
        self.ratio = check_ratio(self.ratio, "--ratio")
        self.r_thres = check_ratio(self.r_thres, "--r-thres")
        if self.alpha is not None and not math.isfinite(self.alpha):
            raise HpruneError(f"--alpha must be a finite number, got {self.alpha}.")


def position_weight(position: int, n_blocks: int, alpha: float) -> float:
    """W_pos(i) = exp(alpha * (|B| - 1 - i) / |B|).

    The paper's printed Eq. (2) is garbled; this is the reading that "maps the
    more critical earlier blocks to lower values" of the prunability score:
    the weight is largest for block 0 and exactly 1 for the last block, and it
    multiplies |dP|, which the score negates.
    """
    return math.exp(alpha * (n_blocks - 1 - position) / n_blocks)


def hpp_scores(drops: dict[str, float], units: ModelUnits, alpha: float) -> dict[str, float]:
    """Score(i, c) = -|dP(i, c)| * W_pos(i); the highest score is pruned first."""
    n = len(units.blocks)
    return {key: -abs(dp) * position_weight(units.position(key), n, alpha) for key, dp in drops.items()}


def koala_scores(similarity: dict[str, float]) -> dict[str, float]:
    """The more a block leaves its input unchanged, the sooner it goes."""
    return dict(similarity)


def bkscore_scores(alignment_drops: dict[str, float]) -> dict[str, float]:
    """Smallest drop of the text-image score first (a negative drop is a gain)."""
    return {key: -drop for key, drop in alignment_drops.items() if Unit.parse(key).is_block}


def lastk_scores(units: ModelUnits) -> dict[str, float]:
    return {key: float(i) for i, key in enumerate(units.blocks)}


def ranked(scores: dict[str, float], units: ModelUnits) -> list[str]:
    """Highest score first; ties go to the later block (the paper's prior)."""
    return sorted(scores, key=lambda k: (-scores[k], -units.position(k), k))


@dataclass
class Selection:
    units: list[str] = field(default_factory=list)
    removed: int = 0

    def add(self, key: str, params: int) -> None:
        self.units.append(key)
        self.removed += params

    def holds_block_of(self, key: str) -> bool:
        return Unit.parse(key).block_unit().key in self.units


def select(order: list[str], units: ModelUnits, target: int, chosen: Selection | None = None) -> Selection:
    """Take units in order until `target` parameters are removed.

    Stopping at the first unit that reaches the target bounds the overshoot by
    one unit, so plans of different methods agree within one unit.
    """
    chosen = chosen or Selection()
    for key in order:
        if chosen.removed >= target:
            break
        if key in chosen.units or chosen.holds_block_of(key) or units.params.get(key, 0) <= 0:
            continue
        chosen.add(key, units.params[key])
    return chosen


def select_hpp(order: list[str], units: ModelUnits, target: int, block_budget: int) -> Selection:
    """Whole blocks up to `r_thres`, then subcomponents for the rest (paper, Alg. 1).

    Below `r_thres` the plan is blocks only, as in the paper's moderate setting.
    """
    blocks = [k for k in order if Unit.parse(k).is_block]
    if target <= block_budget:
        return select(blocks, units, target)
    chosen = Selection()
    for key in blocks:
        if chosen.removed + units.params[key] <= block_budget:
            chosen.add(key, units.params[key])
    subs = [k for k in order if not Unit.parse(k).is_block]
    return select(subs, units, target, chosen)


def single_unit_drops(rows: list[dict], component: str | None = None) -> dict[str, float]:
    """Unit key -> dP (or the drop of one metric component) from single-unit rows."""
    out = {}
    for row in rows:
        if len(row["units"]) != 1:
            continue
        out[row["units"][0]] = float(row["dP"] if component is None else row["drops"][component])
    return out


def method_scores(config: PlanConfig, units: ModelUnits, rows: list[dict], similarity: dict | None) -> dict[str, float]:
    if config.method == "hpp":
        return hpp_scores(_need(single_unit_drops(rows), "hpp"), units, resolved_alpha(config, units))
    if config.method == "bkscore":
        _check_component(rows, config.alignment)
        return bkscore_scores(_need(single_unit_drops(rows, config.alignment), "bkscore"))
    if config.method == "koala":
        if not similarity:
            raise HpruneError("koala needs block similarities (similarity.json); re-run `hprune profile` on this run directory.")
        return koala_scores(similarity)
    return lastk_scores(units)


def resolved_alpha(config: PlanConfig, units: ModelUnits) -> float:
    if config.alpha is not None:
        return float(config.alpha)
    if units.family not in PAPER_ALPHA:
        raise HpruneError(f"no default alpha for family '{units.family}'; pass --alpha.")
    return PAPER_ALPHA[units.family]


def make_plan(config: PlanConfig, units: ModelUnits, rows: list[dict], similarity: dict | None = None) -> Plan:
    """Rank with `config.method` and remove units until `config.ratio` is reached."""
    scores = method_scores(config, units, rows, similarity)
    order = ranked({k: v for k, v in scores.items() if k in units.params}, units)
    target = math.ceil(config.ratio * units.total_params)
    if config.method == "hpp":
        chosen = select_hpp(order, units, target, int(config.r_thres * units.total_params))
    else:
        chosen = select(order, units, target)
    if chosen.removed < target:
        raise HpruneError(
            f"{config.method} cannot reach ratio {config.ratio}: the ranked units hold only "
            f"{chosen.removed / units.total_params:.3f} of the parameters; lower --ratio or profile more units."
        )
    return Plan(
        family=units.family, arch=units.arch, units=chosen.units, method=config.method,
        norm_mode=config.norm_mode, ratio_target=config.ratio,
        ratio_reached=chosen.removed / units.total_params,
        alpha=resolved_alpha(config, units) if config.method == "hpp" else None,
        r_thres=config.r_thres if config.method == "hpp" else None,
        scores={k: round(scores[k], 8) for k in order},
    )


def _need(drops: dict[str, float], method: str) -> dict[str, float]:
    if not drops:
        raise HpruneError(f"{method} needs a contribution table; run `hprune profile` first (contribution.jsonl is empty).")
    return drops


def _check_component(rows: list[dict], component: str) -> None:
    known = set(rows[0]["drops"]) if rows else set()
    if rows and component not in known:
        raise HpruneError(f"the contribution table has no '{component}' score; choose --alignment from {sorted(known)}.")


@dataclass
class RunData:
    """What `hprune profile` left in a run directory, as plans and reports need it."""

    path: Path
    units: ModelUnits
    rows: list[dict]
    similarity: dict[str, float]
    reference: dict
    settings: dict

    @property
    def alignment(self) -> str:
        return self.reference.get("alignment", "semantic")

    @property
    def norm_mode(self) -> str:
        return self.settings.get("norm_mode", "identity")


def load_run(run_dir: str | Path) -> RunData:
    """Read a profile run directory; a half-written last table line is skipped."""
    path = Path(run_dir)
    if not (path / "units.json").is_file():
        raise HpruneError(f"{path} is not a profile run directory (no units.json); run `hprune profile MODEL --out {path}` first.")
    rows = read_jsonl(path / "contribution.jsonl")
    read = lambda name: json.loads((path / name).read_text()) if (path / name).is_file() else {}
    return RunData(path, ModelUnits.load(path / "units.json"), rows, read("similarity.json"),
                   read("reference.json"), read("config.json").get("settings", {}))


def plan_for_run(run: RunData, method: str, ratio: float, **overrides) -> Plan:
    """The plan `hprune plan` makes: norm mode and alignment score from the run."""
    fields = {"norm_mode": run.norm_mode, "alignment": run.alignment, **overrides}
    return make_plan(PlanConfig(method, ratio, **fields), run.units, run.rows, run.similarity)
