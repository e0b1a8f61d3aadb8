import numpy as np
import pytest

from hprune.core.errors import HpruneError
from hprune.metrics import Metric, ShapesMetric, available_metrics, check_scores, get_metric, register_metric


class Brightness(Metric):
    name = "brightness"
    components = ("brightness",)
    primary = alignment = "brightness"

    def __init__(self, scale=1.0):
        self.scale = scale

    def score(self, images, prompts, scenes=None):
        return {"brightness": self.scale * images.reshape(len(images), -1).mean(1) / 255}


def test_registered_names_and_spec_argument():
    assert {"shapes", "clip", "hps", "pickscore"} <= set(available_metrics())
    register_metric("scaled-brightness", lambda arg, device: Brightness(float(arg or 1)))
    metric = get_metric("scaled-brightness:2")
    imgs = np.full((2, 4, 4, 3), 255, np.uint8)
    np.testing.assert_allclose(check_scores(metric, metric.score(imgs, ["a", "b"]), 2)["brightness"], [2, 2])


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(HpruneError, match="metric 'fid' is unknown; choose one of .*clip"):
        get_metric("fid")


def test_shapes_metric_roles_and_no_argument():
    metric = get_metric("shapes")
    assert isinstance(metric, ShapesMetric)
    assert (metric.primary, metric.alignment) == ("score", "semantic")
    with pytest.raises(HpruneError, match="takes no argument"):
        get_metric("shapes:/x")


def test_shapes_metric_wraps_the_evaluator(monkeypatch):
    import sys
    import types

    from hprune.metrics import ShapesMetric

    fake = types.ModuleType("hprune.toy.shapes_eval")
    report = types.SimpleNamespace(per_prompt=[{"correct": True, "quality": 0.5}, {"correct": False, "quality": 0.25}])
    seen = {}
    fake.evaluate = lambda images, scenes: seen.setdefault("scenes", scenes) and report
    monkeypatch.setitem(sys.modules, "hprune.toy.shapes_eval", fake)
    scores = ShapesMetric().score(np.zeros((2, 8, 8, 3), np.uint8), ["a red circle", "two blue squares"])
    from hprune.toy.prompts import parse

    assert seen["scenes"] == [parse("a red circle"), parse("two blue squares")]
    np.testing.assert_allclose(scores["semantic"], [1, 0])
    np.testing.assert_allclose(scores["quality"], [0.5, 0.25])
    np.testing.assert_allclose(scores["score"], [0.75, 0.125])
