"""How the bench states a figure: the median of repeated measurements with its spread,
(max - min) / median, flagged ``noisy`` over 10 % (or with one value, which has no spread
to judge). Every ratio and share in ``results/bench.json`` has this shape."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

NOISY_SPREAD = 0.10  # a figure whose values spread more than this is not a clean figure


def spread_figure(values: Sequence[float]) -> dict[str, object]:
    """``{"median", "spread", "values", "noisy"}`` of repeated measurements of one figure."""
    values = [float(v) for v in values]
    median = statistics.median(values)
    spread = (max(values) - min(values)) / abs(median) if len(values) > 1 and median else None
    return {
        "median": median,
        "spread": spread,  # None (JSON null) where one value has no spread
        "values": values,
        "noisy": spread is None or spread > NOISY_SPREAD,
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
    if len(values) > 1 and ratio["spread"] is not None:
        text += f"spread {100 * ratio['spread']:.0f}% over {len(values)} "
        text += f"({shown(min(values))}..{shown(max(values))})"
    text += f"   ({target})"
    if len(values) < 2:
        text += "\n    NOISY: one measurement has no spread to judge; not a clean figure"
    elif ratio["noisy"]:
        text += "\n    NOISY: the repeats disagree by more than 10 %; not a clean figure (rerun on "
        text += "an idle machine, or with more repeats)"
    return text


@dataclass(frozen=True)
class Goal:
    """What a figure must reach to count as met: a bound on its median (``at_least`` or
    ``at_most``) and, where the issue asks for it, a bound on its spread."""

    at_least: float | None = None
    at_most: float | None = None
    max_spread: float | None = None

    def verdict(self, figure: dict) -> str:
        """``met`` when the median and every repeat are within the bounds (and the spread,
        where bounded); ``inconclusive`` when the median is but some repeat is not; else
        ``not met``."""
        median, spread, values = figure["median"], figure["spread"], figure["values"]
        if median is None:
            return "**not measured**"

        def within(value: float) -> bool:
            return (self.at_least is None or value >= self.at_least) and (
                self.at_most is None or value <= self.at_most
            )

        spread_ok = self.max_spread is None or (spread is not None and spread <= self.max_spread)
        if not within(median) or not spread_ok:
            return "**not met**"
        return "met" if all(map(within, values)) else "inconclusive"


@dataclass(frozen=True)
class FigureSpec:
    """How a figure of ``ratios`` is printed: label, target text, x (ratio) or % (share),
    and its goal (None: a descriptive figure with no target)."""

    label: str
    target: str
    unit: str = "x"
    goal: Goal | None = None

    def verdict(self, figure: dict) -> str:
        """``met`` / ``not met`` against the goal; a dash for a descriptive figure."""
        return self.goal.verdict(figure) if self.goal else "-"


def strict_json(result: object) -> str:
    """``result`` as standard JSON: a NaN or infinity (no value measured) is written null,
    never the ``NaN`` token that strict parsers reject."""

    def clean(value: object) -> object:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [clean(item) for item in value]
        return value

    return json.dumps(clean(result), indent=2, allow_nan=False) + "\n"
