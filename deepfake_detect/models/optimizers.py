"""Optimizer factories taking ``lr`` (so ``optimizer.lr=...`` works for every choice)."""

from __future__ import annotations

import keras


def adam(lr: float, name: str = "adam", **options: float) -> keras.optimizers.Optimizer:
    """Adam with learning rate ``lr``."""
    return keras.optimizers.Adam(learning_rate=float(lr), name=name, **options)


def sgd(
    lr: float, name: str = "sgd", momentum: float = 0.9, nesterov: bool = True, **options: float
) -> keras.optimizers.Optimizer:
    """SGD with (Nesterov) momentum."""
    return keras.optimizers.SGD(
        learning_rate=float(lr), momentum=momentum, nesterov=nesterov, name=name, **options
    )


def adamw(
    lr: float, name: str = "adamw", weight_decay: float = 1e-4, **options: float
) -> keras.optimizers.Optimizer:
    """AdamW (decoupled weight decay)."""
    return keras.optimizers.AdamW(
        learning_rate=float(lr), weight_decay=weight_decay, name=name, **options
    )
