"""Pretrained-weights choices shared by the ``keras.applications`` backbones."""

from __future__ import annotations

from pathlib import Path


def resolve_weights(weights: str | None, backbone: str) -> str | None:
    """``None`` (random init), ``"imagenet"`` (needs the Keras cache or network) or a local
    file holding ``backbone``'s weights without its classifier (``include_top=False``)."""
    if weights in (None, "", "null", "none"):
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(str(weights)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"model.weights={weights!r} is neither null, 'imagenet' nor an existing weights file; "
            f"give a path to a .weights.h5/.h5 file for {backbone} (include_top=False)"
        )
    return str(path.resolve())
