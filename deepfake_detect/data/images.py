"""The one image loader: any readable image file -> uint8 RGB ``size x size`` (training,
the decoded cache, ``predict`` and ``evaluate`` all decode through here)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

# what a corrupt, truncated, unreadable or absurdly large file raises while decoding
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
)


def to_8bit(image: Image.Image) -> Image.Image:
    """16-bit (and 32-bit integer) grayscale scaled to 8 bit; PIL's own conversion clips
    everything above 255 to white."""
    if image.mode not in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        return image
    values = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
    return Image.fromarray(np.clip(np.rint(values * 255.0 / top), 0, 255).astype(np.uint8), "L")


def load_image(path: Path | io.BytesIO, size: int) -> np.ndarray:
    """Decode any image (grayscale, RGBA, palette, any size) to uint8 RGB ``size x size``."""
    with Image.open(path) as image:
        image.load()
        rgb = to_8bit(image).convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def try_load_image(path: Path, size: int) -> np.ndarray | str:
    """The decoded image, or the error text when the file cannot be decoded."""
    try:
        return load_image(path, size)
    except DECODE_ERRORS as error:
        return f"{type(error).__name__}: {error}"


DIGEST_BYTES = 16


def read_and_decode(path: Path, size: int) -> tuple[np.ndarray | str, bytes]:
    """Read the file once: (decoded image or the error text, content hash of its bytes; all
    zeros when it cannot be read). The hash finds the same image in two splits."""
    try:
        data = path.read_bytes()
    except OSError as error:
        hint = "; fix its permissions" if isinstance(error, PermissionError) else ""
        return f"{type(error).__name__}: {error}{hint}", bytes(DIGEST_BYTES)
    digest = hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest()
    try:
        return load_image(io.BytesIO(data), size), digest
    except DECODE_ERRORS as error:
        return f"{type(error).__name__}: {error}", digest
