"""The one progress line every long step shows (issue #22: no step longer than a few
seconds runs silent).

`progress(...)` is a tqdm bar on stderr that redraws itself every second, so even
one slow update (a denoising step of a large batch on CPU) shows its elapsed time
moving. Long loops update it by fractions (`bar.update(1 / steps)`) to move
within a unit of work.
"""

from __future__ import annotations

import threading

from tqdm.auto import tqdm

REDRAW_SECONDS = 1.0


class Progress(tqdm):
    """tqdm that a daemon thread redraws every REDRAW_SECONDS while it is open."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("dynamic_ncols", True)
        super().__init__(*args, **kwargs)
        self._stop = threading.Event()
        if not self.disable:
            threading.Thread(target=self._redraw, name="hprune-progress", daemon=True).start()

    def _redraw(self) -> None:
        while not self._stop.wait(REDRAW_SECONDS):
            try:
                self.refresh()
            except Exception:  # closed meanwhile
                return

    def close(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()
        super().close()


def progress(iterable=None, desc: str = "", total: float | None = None, unit: str = "it", enabled: bool = True,
             **kwargs) -> Progress:
    """A redrawing bar; `enabled=False` gives a silent one (same calls, no output)."""
    return Progress(iterable, desc=desc, total=total, unit=unit, disable=not enabled, **kwargs)


def quiet_library_bars() -> None:
    """For --no-progress: diffusers' and transformers' own bars (loading a pipeline's
    components, a text encoder's shards) off for the rest of the process."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
