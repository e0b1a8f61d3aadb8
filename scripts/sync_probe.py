"""Where a distillation run makes the host wait for the GPU.

    python3 scripts/sync_probe.py [scale_distill.py's arguments] > syncs.txt

Runs scripts/scale_distill.py with torch.cuda.set_sync_debug_mode("warn") and prints, for each place
a synchronizing CUDA call was made, its Python stack (once) and, at the end, how often each place
synchronized: a place met about once per step is a per-step sync that lets the GPU drain. Set-up
(building the models, FLOP counting, the GEMM peak) synchronizes too; those places are met once.
torch flags the calls it knows to synchronize (.item(), .cpu(), .tolist(), nonzero, blocking copies),
not implicit ones such as cudaHostAlloc, nor waits on CUDA events (hprune.distill.readback's own
wait, which the phase timings below cover). So it also prints the host's median time per step in each
phase of hprune.distill's loop: a phase far longer than its kernel launches takes is where the host
waits (or what sets the pace when the GPU is ahead).
"""

from __future__ import annotations

import collections
import functools
import runpy
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
places: collections.Counter = collections.Counter()
_show_other = warnings.showwarning
phases: dict[str, list[float]] = collections.defaultdict(list)


def _timed(name, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[name(args, kwargs) if callable(name) else name].append(time.perf_counter() - t)
    return wrapper


def _time_the_loop() -> None:
    """Wrap the loop's phases (module attributes it looks up at call time) with host timers."""
    from accelerate import Accelerator

    import hprune.distill.loop as loop
    from hprune.distill.readback import LaggedReadback

    for attr in ("_device_batch", "_update", "kd_loss", "feature_loss"):
        setattr(loop, attr, _timed(attr, getattr(loop, attr)))
    velocity_fn = loop.velocity_fn
    loop.velocity_fn = lambda model: _timed(lambda a, k: "student forward" if "config" in k else "teacher forward",
                                            velocity_fn(model))
    Accelerator.backward = _timed("backward", Accelerator.backward)
    LaggedReadback.push = _timed("LaggedReadback.push (waits for the step before)", LaggedReadback.push)


def _show(message, category, filename, lineno, file=None, line=None) -> None:
    if "synchronizing CUDA operation" not in str(message):
        _show_other(message, category, filename, lineno, file, line)
        return
    stack = traceback.extract_stack()[:-1]
    key = tuple((f.filename, f.lineno) for f in stack[-6:])
    places[key] += 1
    if places[key] == 1:
        print(f"SYNC {len(places)}: {message}\n" + "".join(traceback.format_list(stack[-8:])), flush=True)


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("sync_probe.py looks for CUDA synchronisations and needs a CUDA GPU.")
    warnings.showwarning = _show
    warnings.simplefilter("always")
    torch.cuda.set_sync_debug_mode("warn")
    sys.argv = [str(HERE / "scale_distill.py"), *sys.argv[1:]]
    sys.path.insert(0, str(HERE))
    _time_the_loop()
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        torch.cuda.set_sync_debug_mode("default")
        print("\nsynchronizing places, most met first:")
        for key, count in places.most_common():
            print(f"{count:6d}  {key[-2][0]}:{key[-2][1]}  (from {key[-3][0]}:{key[-3][1]})")
        print("\nhost time per call, median of the last 4 calls (ms):")
        for name, times in phases.items():
            print(f"{statistics.median(times[-4:]) * 1e3:9.2f}  {name}  ({len(times)} calls)")


if __name__ == "__main__":
    main()
