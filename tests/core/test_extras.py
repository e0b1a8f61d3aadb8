"""An installed optional extra never breaks the base install (issue #22, item 6):
`pip install hprune[quant]` on a CPU machine brings mslk-cuda, whose native library
cannot load there, and torchao imports it without a guard whenever it is installed."""

import subprocess
import sys
import textwrap


def _fake_packages(root):
    """mslk that fails as mslk-cuda does without CUDA, and a torchao that imports it
    exactly as torchao 0.18 does (torchao/utils.py, _is_mslk_available)."""
    (root / "mslk").mkdir()
    (root / "mslk" / "__init__.py").write_text(textwrap.dedent("""
        import logging
        logging.error("Could not load the library 'mslk.so'!")
        raise OSError("libc10_cuda.so: cannot open shared object file: No such file or directory")
    """))
    (root / "torchao").mkdir()
    (root / "torchao" / "__init__.py").write_text(textwrap.dedent("""
        import importlib.util
        if importlib.util.find_spec("mslk") is not None:
            import mslk  # noqa: F401
        HAS_MSLK = importlib.util.find_spec("mslk") is not None
    """))


def _run(tmp_path, script):
    env_path = f"{tmp_path}"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})


def test_a_kernel_package_that_cannot_load_is_hidden_from_torchao(tmp_path):
    _fake_packages(tmp_path)
    without_hprune = _run(tmp_path, "import torchao")
    assert without_hprune.returncode != 0 and "libc10_cuda.so" in without_hprune.stderr  # the failure the guard fixes
    done = _run(tmp_path, textwrap.dedent("""
        import sys
        import hprune
        assert "torch" not in sys.modules  # the guard costs nothing until torchao is imported
        import torchao
        from hprune.core.extras import HIDDEN
        assert torchao.HAS_MSLK is False, "torchao must see mslk as absent"
        assert "libc10_cuda.so" in HIDDEN["mslk"], HIDDEN
        print("ok")
    """))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"
    assert "Could not load" not in done.stderr, "the kernel's own load-failure log is noise here"


def test_a_kernel_package_that_loads_is_kept(tmp_path):
    (tmp_path / "mslk").mkdir()
    (tmp_path / "mslk" / "__init__.py").write_text("LOADED = True\n")
    (tmp_path / "torchao").mkdir()
    (tmp_path / "torchao" / "__init__.py").write_text("import mslk\nHAS_MSLK = mslk.LOADED\n")
    done = _run(tmp_path, "import hprune, torchao\nassert torchao.HAS_MSLK\nfrom hprune.core.extras import HIDDEN\nassert not HIDDEN\n")
    assert done.returncode == 0, done.stderr
