"""How the bench states a figure: the median of repeated measurements with its spread,
(max - min) / median, flagged ``noisy`` over 10 % (or with one value, which has no spread
to judge). Every ratio and share in ``results/bench.json`` has this shape."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

NOISY_SPREAD = 0.10  # a figure whose values spread more than this is not a clean figure


def spread_figure(values: Sequence[float]) -> dict[str, object]:
    """``{"median", "spread", "values", "noisy"}`` of repeated measurements of one figure."""
    values = [float(v) for v in values]
    median = statistics.median(values)
    spread = (max(values) - min(values)) / abs(median) if len(values) > 1 and median else math.nan
    return {
        "median": median,
        "spread": spread,
        "values": values,
        "noisy": not spread <= NOISY_SPREAD,
    }


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> dict[str, object]:
    """The figure of the per-repeat ratios: both cases of a pair ran in the same repeat, side
    by side, so slow machine drift cancels."""
    return spread_figure([n / d for n, d in zip(numerators, denominators, strict=True)])


def ratio_line(label: str, ratio: dict, target: str, unit: str = "x") -> str:
    """``label  1.31x  spread 4% over 5 pairs (1.28..1.33)  (target)``, flagged NOISY."""
    values = ratio["values"]
    shown = (lambda v: f"{100 * v:.2f}%") if unit == "%" else (lambda v: f"{v:.2f}{unit}")
    text = f"{label:<24} {shown(ratio['median'])}  "
    if len(values) > 1:
        text += f"spread {100 * ratio['spread']:.0f}% over {len(values)} "
        text += f"({shown(min(values))}..{shown(max(values))})"
    text += f"   ({target})"
    if len(values) < 2:
        text += "\n    NOISY: one measurement has no spread to judge; not a clean figure"
    elif ratio["noisy"]:
        text += "\n    NOISY: the repeats disagree by more than 10 %; not a clean figure (rerun on "
        text += "an idle machine, or with more repeats)"
    return text
