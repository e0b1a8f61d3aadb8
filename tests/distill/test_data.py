"""Resume is bit for bit (issue #22, item 12): a run on freshly made data trains exactly
as its resume on the same data read back from the cache file."""

import torch

from hprune.planning.plan import Plan
from hprune.distill import DistillConfig, distill
from hprune.distill.data import DistillData
from hprune.model.testing import tiny_sd3


def _fresh_data(n=16):
    """As the data sources make it: images permuted from NHWC (channels-last strides)."""
    g = torch.Generator().manual_seed(0)
    nhwc = torch.randn(n, 8, 8, 4, generator=g)
    return DistillData(nhwc.permute(0, 3, 1, 2), torch.randn(n, 6, 32, generator=g), torch.randn(n, 16, generator=g))


def test_fresh_and_cached_data_train_to_identical_weights(tmp_path):
    fresh = _fresh_data()
    fresh.save(tmp_path / "cache.safetensors")
    cached = DistillData.load(tmp_path / "cache.safetensors")
    teacher = tiny_sd3()
    plan = Plan.for_model(teacher, ["joint.1"])
    cfg = DistillConfig(steps=6, batch_size=4, lr=1e-3, checkpoint_every=100)
    a = distill(teacher, plan, fresh, cfg, tmp_path / "fresh", progress=False).state_dict()
    b = distill(teacher, plan, cached, cfg, tmp_path / "cached", progress=False).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "fresh and cached data must train bit for bit alike"


def test_build_data_returns_what_its_cache_file_holds(tmp_path):
    """`hprune distill` trains on the cache as read back, the data a resume reads."""
    from hprune.distill.sources import DATA_FILE, build_data
    from hprune.toy.pipeline import load_pipeline

    pipe = load_pipeline("shapes-sd3")
    data = build_data("shapes:4", pipe, tmp_path, resolution=64, seed=0)
    (cache,) = tmp_path.glob(DATA_FILE.format(key="*"))
    again = DistillData.load(cache)
    for name in ("x0", "seq", "pooled"):
        made, read = getattr(data, name), getattr(again, name)
        assert torch.equal(made, read) and made.stride() == read.stride(), name


def test_an_interrupted_save_leaves_no_half_written_cache(tmp_path, monkeypatch):
    """Issue #22, item 9: Ctrl-C while the cache is written leaves nothing behind."""
    import pytest

    import hprune.distill.data as data_module

    def interrupted(tensors, path):
        open(path, "wb").write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(data_module, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _fresh_data(2).save(tmp_path / "cache.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_the_cache_file_is_readable_like_every_other_file(tmp_path):
    import os

    _fresh_data(2).save(tmp_path / "cache.safetensors")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(tmp_path / "cache.safetensors").st_mode & 0o777 == 0o666 & ~mask
