"""The one progress facility (issue #22, item 9): a bar redraws itself while a long
step runs, so no step longer than a few seconds is silent."""

import io
import time

from hprune.core.progress import REDRAW_SECONDS, progress


def test_a_bar_redraws_while_a_long_step_runs_without_updates():
    out = io.StringIO()
    bar = progress(desc="step", total=1, unit="set", file=out, mininterval=0)
    drawn = out.getvalue().count("\r")
    time.sleep(3.5 * REDRAW_SECONDS)  # one slow unit of work, no update
    redrawn = out.getvalue().count("\r") - drawn
    bar.update(1)
    bar.close()
    assert redrawn >= 2, out.getvalue()
    assert "00:03" in out.getvalue() or "00:04" in out.getvalue(), "the elapsed time moves on the line"


def test_a_disabled_bar_writes_nothing():
    out = io.StringIO()
    bar = progress(range(3), desc="quiet", enabled=False, file=out)
    assert list(bar) == [0, 1, 2]
    bar.close()
    assert out.getvalue() == ""
