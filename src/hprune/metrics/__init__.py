"""Quality metrics behind one interface, found by name.

A metric scores a batch of generated images against their prompts and returns
one value per image for each of its components (`semantic`, `quality`, `clip`,
...). Two components have roles in the pruning method:

- `primary`: the quality P whose drop `dP` the contribution analysis records;
- `alignment`: the text-image score that BK-SDM ranks blocks by.

Specs name a metric and, for learned metrics, the local folder of its weights:
`get_metric("shapes")`, `get_metric("clip:/models/clip-vit-large")`,
`get_metric("hps:/models/hpsv2-hf")`. No weights are ever downloaded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hprune.core.errors import HpruneError


class Metric(ABC):
    name: str = ""
    components: tuple[str, ...] = ()
    primary: str = ""
    alignment: str = ""

    @abstractmethod
    def score(self, images: np.ndarray, prompts: Sequence[str], scenes: Sequence | None = None) -> dict[str, np.ndarray]:
        """uint8 NHWC RGB images -> {component: float array of one value per image}.

        `scenes` (shapes testbed) default to the scenes the prompts describe."""


# name -> factory(argument after the colon, device) -> Metric
_REGISTRY: dict[str, Callable[[str | None, str | None], Metric]] = {}


def register_metric(name: str, factory: Callable[[str | None, str | None], Metric]) -> None:
    _REGISTRY[name] = factory


def available_metrics() -> list[str]:
    return sorted(_REGISTRY)


def check_spec(spec: str, key: str) -> None:
    """Without loading weights: `spec` names a known metric and, for a learned one, an existing
    local folder. Raises HpruneError naming `key` (the flag or recipe key that gave it)."""
    name, _, argument = spec.partition(":")
    if name not in _REGISTRY:
        raise HpruneError(f"{key}: metric '{name}' is unknown; choose one of {', '.join(available_metrics())} "
                          "(e.g. clip:/path/to/clip).")
    if name != "shapes" and not (argument and Path(argument).is_dir()):
        raise HpruneError(f"{key}: the {name} metric needs an existing local weights folder ({name}:/path/to/folder); "
                          f"got '{spec}'.")


def get_metric(spec: str, device: str | None = None) -> Metric:
    """`NAME` or `NAME:ARGUMENT` (a local weights folder for learned metrics)."""
    name, _, argument = spec.partition(":")
    if name not in _REGISTRY:
        raise HpruneError(f"metric '{name}' is unknown; choose one of {', '.join(available_metrics())} (e.g. --metric clip:/path/to/clip).")
    return _REGISTRY[name](argument or None, device)


def check_scores(metric: Metric, scores: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Our invariant: every component, one finite float per image."""
    assert set(scores) == set(metric.components), (metric.name, sorted(scores))
    out = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in scores.items()}
    assert all(len(v) == n for v in out.values()), (metric.name, n)
    return out


class ShapesMetric(Metric):
    """ShapesEval from the testbed (`hprune.toy.shapes_eval`), per image.

    `semantic` is GenEval-like correctness (0/1), `quality` the HPSv2-like
    image quality; P (`score`) is their mean, so dP weighs both as the
    paper's degradation does.
    """

    name = "shapes"
    components = ("score", "semantic", "quality")
    primary = "score"
    alignment = "semantic"

    def score(self, images, prompts, scenes=None):
        from hprune.toy.shapes_eval import evaluate

        if scenes is None:
            # A shapes prompt says everything its scene holds.
            from hprune.toy.prompts import parse

            scenes = [parse(p) for p in prompts]
        report = evaluate(images, scenes)
        semantic = np.array([float(p["correct"]) for p in report.per_prompt])
        quality = np.array([float(p["quality"]) for p in report.per_prompt])
        return {"score": (semantic + quality) / 2, "semantic": semantic, "quality": quality}


def _shapes(argument, device):
    if argument:
        raise HpruneError(f"the shapes metric takes no argument, got 'shapes:{argument}'; write --metric shapes.")
    return ShapesMetric()


def _clip(argument, device):
    from hprune.metrics.clip import ClipScore

    return ClipScore(argument, device)


def _hps(argument, device):
    from hprune.metrics.hps import PreferenceScore

    return PreferenceScore(argument, device, style="hps")


def _pickscore(argument, device):
    from hprune.metrics.hps import PreferenceScore

    return PreferenceScore(argument, device, style="pickscore")


register_metric("shapes", _shapes)
register_metric("clip", _clip)
register_metric("hps", _hps)
register_metric("pickscore", _pickscore)
