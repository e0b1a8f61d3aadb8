"""The numbers of a user study: mean opinion scores with 95% confidence intervals,
best-pick shares, and the relative drop against a reference method.

The MOS interval is Student's t on the ratings of one method and dimension
(mean +- t(0.975, n-1) * s / sqrt(n), s the sample standard deviation); a share's
interval is Wilson's score interval. Ratings of one participant are treated as
independent, as the paper's error bars do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """A mean (or share) with its 95% interval [low, high]; low and high are None below two samples."""

    value: float | None
    low: float | None
    high: float | None
    n: int

    @property
    def half_width(self) -> float | None:
        return None if self.low is None else (self.high - self.low) / 2


def t_quantile_975(dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


def mos(values: list[float]) -> Estimate:
    """Mean opinion score with its Student-t 95% confidence interval."""
    n = len(values)
    if n == 0:
        return Estimate(None, None, None, 0)
    mean = sum(values) / n
    if n == 1:
        return Estimate(mean, None, None, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n)


def share(hits: int, total: int) -> Estimate:
    """hits / total with Wilson's 95% score interval."""
    if total == 0:
        return Estimate(None, None, None, 0)
    p = hits / total
    z2 = Z95 ** 2
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = Z95 * math.sqrt(p * (1 - p) / total + z2 / (4 * total ** 2)) / (1 + z2 / total)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), total)


def relative_drop(reference: float | None, value: float | None) -> float | None:
    """How far `value` falls below `reference`, in percent of the reference (negative: above it)."""
    if reference is None or value is None or reference == 0:
        return None
    return 100.0 * (reference - value) / reference
