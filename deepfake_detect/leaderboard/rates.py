"""Accuracy, precision and recall from confusion counts (pure NumPy, no I/O): the one
arithmetic behind the leaderboard's consistency warnings (:func:`table.consistency_warnings`,
column-wise) and the import's repairs (row by row). A rate whose denominator is 0 is NaN,
i.e. not checkable.
"""

from __future__ import annotations

import numpy as np

RATES: tuple[str, ...] = ("acc", "precision", "recall")  # the rates the counts determine


def rates_from_counts(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    """``acc``, ``precision`` and ``recall`` of counts (scalars or equally shaped arrays),
    NaN where the denominator is 0."""
    tp, fp, tn, fn = (np.asarray(value, dtype=float) for value in (tp, fp, tn, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "acc": np.where(tp + fp + tn + fn > 0, (tp + tn) / (tp + fp + tn + fn), np.nan),
            "precision": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
            "recall": np.where(tp + fn > 0, tp / (tp + fn), np.nan),
        }


def disagreeing(values: dict[str, float], tolerance: float) -> dict[str, float]:
    """The rates of one split's ``values`` (``acc``, ``precision``, ``recall``, ``tp``, ``fp``,
    ``tn``, ``fn``) that differ by more than ``tolerance`` from its counts: name -> the value
    the counts give. Empty when they agree (a NaN rate from counts is never a disagreement)."""
    expected = rates_from_counts(values["tp"], values["fp"], values["tn"], values["fn"])
    found = {}
    for name in RATES:
        want = float(expected[name])
        if not np.isnan(want) and abs(values[name] - want) > tolerance:
            found[name] = want
    return found
