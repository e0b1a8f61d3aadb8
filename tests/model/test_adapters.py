import pytest
import torch

from hprune.model import get_adapter
from hprune.planning.plan import Plan
from hprune.model.units import Unit
from hprune.core.errors import HpruneError
from hprune.model.testing import TINY_MODELS, tiny_flux, tiny_sd3, tiny_sd35_medium


@pytest.mark.parametrize("family", list(TINY_MODELS))
def test_block_units_partition_the_block_parameters(family):
    model = TINY_MODELS[family]()
    adapter = get_adapter(model)
    for block_unit, block in adapter.blocks(model):
        infos = {i.unit.sub: i.params for i in adapter.units(model) if i.unit.block_unit() == block_unit}
        block_params = sum(p.numel() for p in block.parameters())
        subs = sum(v for k, v in infos.items() if k != "block")
        # Subcomponents hold everything but parameter-free norms and proj_out's bias.
        bias = block.proj_out.bias.numel() if block_unit.kind == "single" else 0
        assert subs + bias == block_params


def test_sd35_medium_lists_attn2_only_in_dual_blocks():
    model = tiny_sd35_medium(num_layers=4)
    units = {i.unit for i in get_adapter(model).units(model)}
    assert Unit("joint", 0, "attn2") in units and Unit("joint", 1, "attn2") in units
    assert Unit("joint", 2, "attn2") not in units


def test_flux_lists_double_and_single_units():
    model = tiny_flux(num_layers=2, num_single_layers=3)
    units = {i.unit for i in get_adapter(model).units(model)}
    assert {Unit("single", 2), Unit("single", 2, "mlp_proj"), Unit("joint", 1, "context_mlp")} <= units


def test_sd3_last_block_is_not_removable_whole():
    model = tiny_sd3(num_layers=3)
    adapter = get_adapter(model)
    units = {i.unit for i in adapter.units(model)}
    assert Unit("joint", 2) not in units and Unit("joint", 2, "attn") in units
    with pytest.raises(HpruneError, match="last"):
        Plan.for_model(model, ["joint.2"])


def test_unknown_class_names_supported_ones():
    with pytest.raises(HpruneError, match="SD3Transformer2DModel, FluxTransformer2DModel"):
        get_adapter(torch.nn.Linear(2, 2))
