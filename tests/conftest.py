import builtins
import functools
import io
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

# Tiny models: one thread is faster than contended threads on a 2-core CI box.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@contextmanager
def _sealed_test_split(*files, prompts_file: bool = True):
    """While open, reading the shapes world's held-out test split raises: its prompts (through
    hprune.toy.splits, and its file unless `prompts_file` is False), and `files` (e.g. a
    teacher's scores on it)."""
    from hprune.toy import splits

    def refuse(what):
        raise AssertionError(f"the test split was read where only train and val may be: {what}")

    def guard(fn):
        @functools.wraps(fn)
        def guarded(name="test", *args, **kwargs):
            if name == "test":
                refuse(f"{fn.__name__}('test')")
            return fn(name, *args, **kwargs)
        return guarded

    sealed = {Path(f).resolve() for f in ((splits.DATA / "test.txt",) if prompts_file else ()) + files}
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file).resolve() in sealed:
            refuse(file)
        return real_open(file, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        for name in ("load_split", "prompts_by_category", "eval_set"):
            mp.setattr(splits, name, guard(getattr(splits, name)))
        mp.setattr(builtins, "open", guarded_open)
        mp.setattr(io, "open", guarded_open)
        yield


@pytest.fixture
def seal_test_split():
    """`with seal_test_split(*files, prompts_file=True):` reading the test split (or `files`) inside raises."""
    return _sealed_test_split
