"""Robustness perturbations of an evaluation split: what to apply and at which levels.

Only the description lives here (no TensorFlow: commands parse ``--robustness`` before any
model loads); ``data/pipeline.py`` applies them to each uint8 batch inside tf.data, so a
perturbed split is never written to disk and memory stays flat in the split size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS: dict[str, str] = {
    "jpeg": "JPEG re-encoding at quality Q (1-100)",
    "scale": "down-scaling by a factor F (0 < F < 1) and back (bilinear, antialiased)",
    "blur": "Gaussian blur with sigma S pixels (S > 0)",
}
DEFAULT_SPEC = "jpeg:90,70,50;scale:0.5,0.25;blur:1,2"
SPEC_HELP = (
    "KIND:LEVEL,LEVEL;... with KIND "
    + ", ".join(f"{kind} ({text})" for kind, text in KINDS.items())
    + f"; default {DEFAULT_SPEC!r}; 'none' for no robustness pass"
)


@dataclass(frozen=True)
class Perturbation:
    """One perturbation at one level, e.g. ``jpeg`` at quality 50."""

    kind: str
    level: float

    @property
    def name(self) -> str:
        """The key part of its metrics: ``jpeg50``, ``scale0.5``, ``blur1``."""
        return f"{self.kind}{self.level:g}"

    def describe(self) -> str:
        return {
            "jpeg": f"JPEG quality {self.level:g}",
            "scale": f"scale x{self.level:g} and back",
            "blur": f"Gaussian blur sigma {self.level:g}",
        }[self.kind]


def _check(kind: str, level: float, text: str) -> Perturbation:
    valid = {
        "jpeg": 1 <= level <= 100 and level == int(level),
        "scale": 0 < level < 1,
        "blur": 0 < level <= 32,
    }[kind]
    if not valid or not math.isfinite(level):
        raise ValueError(f"robustness level {text!r} of {kind}: {KINDS[kind]}")
    return Perturbation(kind, level)


def parse_spec(spec: str) -> tuple[Perturbation, ...]:
    """``"jpeg:90,50;blur:1"`` -> the perturbations in that order; ``none`` or ``""`` -> ()."""
    if spec.strip().lower() in ("", "none"):
        return ()
    found: list[Perturbation] = []
    for part in filter(None, (piece.strip() for piece in spec.split(";"))):
        kind, sep, levels = part.partition(":")
        kind = kind.strip().lower()
        if kind not in KINDS or not sep or not levels.strip():
            raise ValueError(f"robustness {part!r} not understood; use {SPEC_HELP}")
        for text in levels.split(","):
            try:
                level = float(text)
            except ValueError:
                raise ValueError(
                    f"robustness level {text.strip()!r} of {kind} is not a number"
                ) from None
            found.append(_check(kind, level, text.strip()))
    if len({p.name for p in found}) != len(found):
        raise ValueError(f"robustness {spec!r} names a level twice")
    return tuple(found)


def spec_text(perturbations: tuple[Perturbation, ...]) -> str:
    """The canonical spec of ``perturbations`` (``none`` when empty), as tagged on a run."""
    if not perturbations:
        return "none"
    kinds: dict[str, list[str]] = {}
    for p in perturbations:
        kinds.setdefault(p.kind, []).append(f"{p.level:g}")
    return ";".join(f"{kind}:{','.join(levels)}" for kind, levels in kinds.items())
