import pytest

from hprune.model.units import Unit
from hprune.core.errors import HpruneError


def test_parse_round_trips():
    for text in ("joint.12.attn", "single.3.mlp_proj", "joint.0.block"):
        assert Unit.parse(text).key == text
    assert Unit.parse("single.4") == Unit("single", 4, "block")


@pytest.mark.parametrize("bad", ["joint", "joint.x.attn", "single.2.context_mlp", "double.1", "joint.1.ffn"])
def test_parse_rejects_bad_names(bad):
    with pytest.raises(HpruneError, match="not a unit name"):
        Unit.parse(bad)
