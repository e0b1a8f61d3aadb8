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


@pytest.fixture(scope="session")
def script():
    """`script(name)`: the module scripts/<name>.py (scripts/ is not a package), imported by path."""
    import importlib.util

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def chromium():
    """A headless Debian `chromium` driven by Playwright (no browser download: the system binary).
    The README's test command installs it with apt; without it the browser tests fail, not skip,
    so CI cannot go green without running them."""
    import shutil

    from playwright.sync_api import sync_playwright

    path = shutil.which("chromium")
    assert path, "Debian's chromium is not installed: apt-get install -y chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium):
    """A fresh page; `page.console_errors` collects console errors and uncaught page errors."""
    page = chromium.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    yield page
    page.close()
