"""Regional compilation of pruned transformers (issue #16, case 5): every block runs compiled,
however many distinct shapes pruning gave them. Compiled with a counting backend (no codegen):
each block call runs exactly one compiled graph when nothing falls back to eager."""

import itertools

import pytest
import torch

from hprune.planning.plan import Plan
from hprune.cli import main
from hprune.model.compile import block_shapes, compile_blocks_
from hprune.prune.surgery import prune_
from hprune.model.testing import dummy_inputs, tiny_flux, tiny_sd3

FLUX_JOINT_SUBS = ("norm", "context_norm", "attn", "mlp", "context_mlp")


class CountingBackend:
    """A torch.compile backend that runs the traced graph and counts graphs and their calls."""

    def __init__(self):
        self.graphs = self.calls = 0

    def __call__(self, graph, example_inputs):
        self.graphs += 1

        def run(*args):
            self.calls += 1
            return graph.forward(*args)
        return run


@pytest.fixture
def dynamo():
    """A clean Dynamo cache for the test, and its recompile limits restored after it."""
    import torch._dynamo

    config = torch._dynamo.config
    torch._dynamo.reset()
    with config.patch(recompile_limit=config.recompile_limit, accumulated_recompile_limit=config.accumulated_recompile_limit):
        yield config
    torch._dynamo.reset()


def _flux_with_distinct_joint_blocks(n: int):
    """A tiny FLUX whose n double blocks each lost a different set of subcomponents (n shapes)."""
    model = tiny_flux(num_layers=n, num_single_layers=1)
    removals = itertools.chain.from_iterable(itertools.combinations(FLUX_JOINT_SUBS, r) for r in (0, 1, 2))
    units = [f"joint.{i}.{sub}" for i, subs in zip(range(n), removals) for sub in subs]
    prune_(model, Plan.for_model(model, units))
    return model


def _run(model, kwargs):
    with torch.no_grad():
        return model(**kwargs)[0]


def test_every_block_shape_runs_compiled(dynamo):
    # 3 shapes over a limit of 2 stands in for 9 shapes over torch's 8 (see the slow test below)
    dynamo.recompile_limit = 2
    model = _flux_with_distinct_joint_blocks(3)
    kwargs = dummy_inputs(model)
    eager = _run(model, kwargs)
    backend = CountingBackend()
    assert compile_blocks_(model, backend=backend, fullgraph=True) == {"joint": 3, "single": 1}
    assert torch.allclose(_run(model, kwargs), eager, atol=1e-6)
    assert backend.graphs == 4 and backend.calls == 3 + 1  # one graph per shape; every block ran one


def test_compiling_each_block_as_diffusers_does_drops_blocks_past_the_limit(dynamo):
    # the baseline compile_blocks_ fixes: diffusers' compile_repeated_blocks is block.compile() per block
    dynamo.recompile_limit = 2
    model = _flux_with_distinct_joint_blocks(3)
    backend = CountingBackend()
    for block in [*model.transformer_blocks, *model.single_transformer_blocks]:
        block.compile(backend=backend)
    _run(model, dummy_inputs(model))
    assert backend.calls == 2 + 1  # the third double block ran uncompiled, silently


def test_sd3_blocks_compile_too(dynamo):
    # diffusers' SD3 transformer has no _repeated_blocks (compile_repeated_blocks refuses it); its
    # last block (context_pre_only) is a second shape, a removed attn a third
    model = tiny_sd3(num_layers=3)
    prune_(model, Plan.for_model(model, ["joint.0.attn"]))
    kwargs = dummy_inputs(model)
    eager = _run(model, kwargs)
    backend = CountingBackend()
    assert compile_blocks_(model, backend=backend, fullgraph=True) == {"joint": 3}
    assert torch.allclose(_run(model, kwargs), eager, atol=1e-6)
    assert backend.graphs == 3 and backend.calls == 3


def test_block_shapes_count_what_pruning_made():
    assert block_shapes(tiny_flux()) == {"joint": 1, "single": 1}
    assert block_shapes(_flux_with_distinct_joint_blocks(9)) == {"joint": 9, "single": 1}
    model = tiny_flux(num_layers=3, num_single_layers=4)
    prune_(model, Plan.for_model(model, ["joint.0", "single.1.attn", "single.2.attn"]))
    assert block_shapes(model) == {"joint": 1, "single": 2}  # whole blocks removed: no new shape


def test_inspect_and_prune_say_how_many_shapes(tmp_path, capsys):
    _flux_with_distinct_joint_blocks(1).save_pretrained(tmp_path / "f")
    assert main(["prune", str(tmp_path / "f"), "--remove", "joint.0.attn", "--out", str(tmp_path / "p")]) == 0
    assert "distinct block shapes: joint 1, single 1" in capsys.readouterr().out
    tiny_flux(num_layers=9, num_single_layers=1).save_pretrained(tmp_path / "nine")
    removals = ",".join(f"joint.{i}.{sub}" for i, sub in enumerate(FLUX_JOINT_SUBS, start=1))
    removals += ",joint.6.attn,joint.6.mlp,joint.7.norm,joint.7.mlp,joint.8.mlp,joint.8.context_mlp"
    assert main(["prune", str(tmp_path / "nine"), "--remove", removals, "--out", str(tmp_path / "p9")]) == 0
    assert "distinct block shapes: joint 9, single 1 (more than" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "p9")]) == 0
    assert "distinct block shapes: joint 9, single 1" in capsys.readouterr().out


@pytest.mark.slow
def test_nine_flux_block_shapes_compile_with_fullgraph(dynamo):
    # the issue's case: diffusers' way fails with FailOnRecompileLimitHit at torch's default limit
    model = _flux_with_distinct_joint_blocks(9)
    kwargs = dummy_inputs(model)
    eager = _run(model, kwargs)
    backend = CountingBackend()
    compile_blocks_(model, backend=backend, fullgraph=True)
    assert torch.allclose(_run(model, kwargs), eager, atol=1e-6)
    assert backend.calls == 9 + 1
