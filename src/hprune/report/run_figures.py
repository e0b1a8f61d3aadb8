"""The pictures of a run report, as PNG bytes: the contribution heatmap (drawn by
`hprune.report.analysis`, the paper's Figure 4 layout), the distillation loss
curves, and sample thumbnails of one common size."""

from __future__ import annotations

import io
import math

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from hprune.report.analysis import draw_contribution
from hprune.planning.scoring import RunData

THUMB = 160  # pixels on the long side of a sample in the grid


def contribution_png(run: RunData) -> bytes:
    buffer = io.BytesIO()
    draw_contribution(run, buffer)  # savefig takes a file object as well as a path
    return buffer.getvalue()


def loss_png(columns: dict[str, list[float]]) -> bytes:
    """`columns`: "step" and one list per logged loss (loss.csv's columns: step,loss,kd,feat).
    A log scale when every value is positive: the losses fall by decades."""
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.subplots()
    steps = columns["step"]
    curves = {name: values for name, values in columns.items() if name != "step"}
    for name, values in curves.items():
        ax.plot(steps, values, lw=1.2, label=name)
    if all(v > 0 for values in curves.values() for v in values if math.isfinite(v)):
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Distillation losses (loss = kd_weight * kd + feat_weight * feat)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def thumbnail_png(data: bytes, side: int = THUMB) -> bytes:
    """The image scaled so its long side is about `side`: large samples shrink (the page
    stays small), tiny ones grow by a whole factor with sharp pixels (a 32 px toy image
    would be a dot)."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    long_side = max(image.size)
    if long_side > side:
        scale = side / long_side
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    elif long_side * 2 <= side:
        factor = side // long_side
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
