"""Rank removable units and turn a ranking into a pruning plan.

Four rankers share one selector (`select`), so that plans made by different
methods for the same ratio remove the same share of parameters within
`PlanConfig.tolerance` (1 point): a ranker that removes whole blocks fills what
a further block would overshoot with the subcomponents it ranks lowest.

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

from hprune.analysis.unit_table import ModelUnits
from hprune.model.units import Unit
from hprune.core.errors import HpruneError
from hprune.core.files import read_jsonl
from hprune.planning.plan import Plan, check_ratio

RANKERS = ("hpp", "koala", "bkscore", "lastk")
# The paper's alphas (appendix A.2): SD3.5 Large Turbo 0.55, FLUX.1-schnell 0.01.
PAPER_ALPHA = {"sd3": 0.55, "flux": 0.01}
DEFAULT_R_THRES = 0.25
MATCH_TOLERANCE = 0.01  # every method's plan removes its ratio and at most 1 point more (matched sizes)


@dataclass
class PlanConfig:
    method: str
    ratio: float
    alpha: float | None = None  # hpp only; None = the paper's value for the family
    r_thres: float = DEFAULT_R_THRES  # hpp only: whole blocks up to here, then subcomponents
    norm_mode: str = "identity"
    alignment: str = "semantic"  # bkscore: the per-metric drop that plays CLIP score's role
    tolerance: float = MATCH_TOLERANCE  # the removed share lands in [ratio, ratio + tolerance]

    def __post_init__(self):
        if self.method not in RANKERS:
            raise HpruneError(f"method '{self.method}' is unknown; choose one of {', '.join(RANKERS)}.")
        self.ratio = check_ratio(self.ratio, "--ratio")
        self.r_thres = check_ratio(self.r_thres, "--r-thres")
        if self.alpha is not None and not math.isfinite(self.alpha):
            raise HpruneError(f"--alpha must be a finite number, got {self.alpha}.")
        if not 0.0 <= self.tolerance < self.ratio:
            raise HpruneError(f"tolerance must be at least 0 and below --ratio ({self.ratio}), got {self.tolerance}.")


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


def with_parts(block_scores: dict[str, float], units: ModelUnits,
               part_scores: dict[str, float] | None = None) -> dict[str, float]:
    """Block scores plus a score for every subcomponent, for filling a plan to its size.

    A part the ranker scores itself (`part_scores`: bkscore's alignment drop of
    each measured part) keeps that score; any other part inherits its block's,
    so KOALA and last-k fill with parts of the block they would remove next.
    """
    inherited = {key: block_scores[Unit.parse(key).block_unit().key] for key in units.params
                 if not Unit.parse(key).is_block and Unit.parse(key).block_unit().key in block_scores}
    return {**inherited, **(part_scores or {}), **block_scores}


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

    def remove(self, key: str, params: int) -> None:
        self.units.remove(key)
        self.removed -= params

    def can_take(self, key: str, units: ModelUnits) -> bool:
        return (key not in self.units and Unit.parse(key).block_unit().key not in self.units
                and units.params.get(key, 0) > 0)


def select(order: list[str], units: ModelUnits, target: int, block_budget: int, slack: int) -> Selection:
    """Remove at least `target` parameters and at most `slack` more, every ranker by one rule.

    1. Whole blocks in rank order, each taken if the plan stays within
       `block_budget` (HPP: `r_thres`; the whole-block rankers: no budget of
       their own) and within `target + slack`; a block that would overshoot
       is passed over, not taken.
    2. If the target is not reached, the subcomponents the ranker ranks lowest
       (most prunable first) fill the remainder by the same rule: each is taken
       if the plan stays within `target + slack`, until the target is reached.
    3. A gap left is smaller than every part still available (`_close`): the
       lowest-ranked part taken is swapped for the best-ranked part that lands
       the plan within `[target, target + slack]`; if no swap does, the part that
       overshoots least is added, so a plan on coarse units (tiny test models)
       may overshoot by up to one part, and its `ratio_reached` says so.

    This is the fair reading of "matched sizes": every method removes the
    target share within `slack` (1 point by default; all four do on the shapes
    teachers' analyses), a whole-block ranker keeps its whole blocks where they
    fit, and the parts it fills with are the ones its own ranking gives up
    first, never another method's.
    """
    chosen = Selection()
    _take_within([k for k in order if Unit.parse(k).is_block], units, target, min(block_budget, target + slack), chosen)
    subs = [k for k in order if not Unit.parse(k).is_block]
    _take_within(subs, units, target, target + slack, chosen)
    if chosen.removed < target:
        _close(subs, units, target, slack, chosen)
    return chosen


def _close(subs: list[str], units: ModelUnits, target: int, slack: int, chosen: Selection) -> None:
    left = [k for k in subs if chosen.can_take(k, units)]
    taken = [k for k in reversed(subs) if k in chosen.units]  # lowest-ranked first
    for new in left:
        for old in taken:
            if target <= chosen.removed - units.params[old] + units.params[new] <= target + slack:
                chosen.remove(old, units.params[old])
                chosen.add(new, units.params[new])
                return
    if left:
        smallest = min(left, key=lambda k: units.params[k])
        chosen.add(smallest, units.params[smallest])


def _take_within(order: list[str], units: ModelUnits, target: int, limit: int, chosen: Selection) -> None:
    """Units in order, each if the plan stays within `limit`, until `target` is reached."""
    for key in order:
        if chosen.removed >= target:
            return
        if chosen.can_take(key, units) and chosen.removed + units.params[key] <= limit:
            chosen.add(key, units.params[key])


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
        drops = _need(single_unit_drops(rows, config.alignment), "bkscore")
        parts = {key: -drop for key, drop in drops.items() if not Unit.parse(key).is_block}
        return with_parts(bkscore_scores(drops), units, parts)
    if config.method == "koala":
        if not similarity:
            raise HpruneError("koala needs block similarities (similarity.json); re-run `hprune profile` on this run directory.")
        return with_parts(koala_scores(similarity), units)
    return with_parts(lastk_scores(units), units)


def resolved_alpha(config: PlanConfig, units: ModelUnits) -> float:
    if config.alpha is not None:
        return float(config.alpha)
    if units.family not in PAPER_ALPHA:
        raise HpruneError(f"no default alpha for family '{units.family}'; pass --alpha.")
    return PAPER_ALPHA[units.family]


def make_plan(config: PlanConfig, units: ModelUnits, rows: list[dict], similarity: dict | None = None) -> Plan:
    """Rank with `config.method` and remove units until `config.ratio` is reached,
    overshooting by at most `config.tolerance` (see `select`)."""
    scores = method_scores(config, units, rows, similarity)
    order = ranked({k: v for k, v in scores.items() if k in units.params}, units)
    target = math.ceil(config.ratio * units.total_params)
    slack = int(config.tolerance * units.total_params)
    block_budget = int(config.r_thres * units.total_params) if config.method == "hpp" else target + slack
    chosen = select(order, units, target, block_budget, slack)
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
