"""Synthetic real-vs-fake face images: the offline default dataset.

Real images: a face-like composition (smooth shaded ellipses) over a 1/f ("pink") noise
background with 1/f texture, i.e. natural image statistics. Fakes start from a real image of
the same kind and then get the cues published detectors find in GAN face swaps, at a random
strength (some fakes are nearly clean):

* a pasted face region, feathered into the image with a slight colour shift,
* softened detail inside it (the generator's low-pass),
* up-sampling artefacts: 2x nearest up-sampling plus a faint checkerboard (periodic spectral peaks).

Afterwards every fake is renormalised to the per-channel mean and contrast of its clean source,
so no global statistic separates the classes, and both classes get the same JPEG compression.
The Test split is mildly shifted: stronger compression and slightly weaker artefacts.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

SPLIT_DIRS: tuple[str, ...] = ("Train", "Validation", "Test")
CLASS_DIRS: tuple[str, ...] = ("Fake", "Real")


@dataclass(frozen=True)
class SplitStyle:
    """How one split is rendered: JPEG quality range and artefact strength scale."""

    quality: tuple[int, int]
    strength_scale: float


STYLES: dict[str, SplitStyle] = {
    "Train": SplitStyle(quality=(75, 95), strength_scale=1.0),
    "Validation": SplitStyle(quality=(75, 95), strength_scale=1.0),
    "Test": SplitStyle(quality=(60, 80), strength_scale=0.85),
}


def pink_noise(rng: np.random.Generator, size: int, alpha: float) -> np.ndarray:
    """Zero-mean, unit-std 2-D noise with a 1/f**alpha amplitude spectrum."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    freq = np.sqrt(fx**2 + fy**2)
    freq[0, 0] = 1.0
    amplitude = freq**-alpha
    amplitude[0, 0] = 0.0
    phase = rng.uniform(0.0, 2.0 * np.pi, amplitude.shape)
    field = np.fft.irfft2(amplitude * np.exp(1j * phase), s=(size, size))
    return (field - field.mean()) / (field.std() + 1e-8)


def _ellipse_mask(size: int, cy: float, cx: float, ry: float, rx: float, soft: float) -> np.ndarray:
    """A soft-edged ellipse in [0, 1]; ``soft`` is the edge width in radius units."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    return np.clip((1.0 - dist) / max(soft, 1e-3) + 0.5, 0.0, 1.0)


def render_real(rng: np.random.Generator, size: int) -> np.ndarray:
    """A face-like RGB image (float32, 0..255) with natural 1/f statistics."""
    background = np.stack([pink_noise(rng, size, rng.uniform(1.6, 2.2)) for _ in range(3)], axis=-1)
    shared = pink_noise(rng, size, rng.uniform(1.6, 2.2))[..., None]
    bg_colour = rng.uniform(60, 190, 3)
    image = bg_colour + 25.0 * (0.7 * shared + 0.3 * background)

    cy, cx = size * rng.uniform(0.42, 0.58), size * rng.uniform(0.42, 0.58)
    ry, rx = size * rng.uniform(0.28, 0.38), size * rng.uniform(0.22, 0.3)
    face = _ellipse_mask(size, cy, cx, ry, rx, soft=0.08)[..., None]
    skin = np.array([rng.uniform(150, 230), rng.uniform(110, 180), rng.uniform(90, 150)])
    yy = np.linspace(-1.0, 1.0, size)[:, None, None]
    shading = 1.0 + rng.uniform(-0.15, 0.15) * yy
    texture = 10.0 * pink_noise(rng, size, rng.uniform(1.2, 1.6))[..., None]
    image = image * (1 - face) + (skin * shading + texture) * face

    for dx in (-0.4, 0.4):  # eyes
        eye = _ellipse_mask(size, cy - 0.25 * ry, cx + dx * rx, 0.08 * ry, 0.16 * rx, 0.3)
        image = image * (1 - eye[..., None]) + rng.uniform(20, 70) * eye[..., None]
    mouth = _ellipse_mask(size, cy + 0.5 * ry, cx, 0.06 * ry, 0.35 * rx, 0.3)[..., None]
    image = image * (1 - mouth) + np.array([140.0, 60.0, 60.0]) * mouth
    return np.clip(image, 0, 255).astype(np.float32)


def _match_statistics(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Give ``image`` the per-channel mean and std of ``reference``."""
    axes = (0, 1)
    centred = (image - image.mean(axes)) / (image.std(axes) + 1e-6)
    return centred * reference.std(axes) + reference.mean(axes)


def apply_swap_artefacts(
    rng: np.random.Generator, image: np.ndarray, strength: float
) -> np.ndarray:
    """Paste a generator-processed face region back into ``image`` (float32, 0..255)."""
    size = image.shape[0]
    pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    softened = pil.filter(ImageFilter.GaussianBlur(radius=0.3 + 0.9 * strength))
    small = softened.resize((size // 2, size // 2), Image.BILINEAR)
    generated = np.asarray(small.resize((size, size), Image.NEAREST), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    checker = ((-1.0) ** (yy + xx))[..., None]
    generated = generated + 3.5 * strength * checker
    generated = generated + rng.normal(0.0, 6.0 * strength, 3)  # colour shift

    cy, cx = size * rng.uniform(0.45, 0.55), size * rng.uniform(0.45, 0.55)
    ry, rx = size * rng.uniform(0.22, 0.32), size * rng.uniform(0.18, 0.26)
    region = _ellipse_mask(size, cy, cx, ry, rx, soft=rng.uniform(0.15, 0.4))[..., None]
    blended = image * (1 - region) + generated * region
    return np.clip(_match_statistics(blended, image), 0, 255).astype(np.float32)


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    """Encode an RGB float/uint8 image as JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=quality
    )
    return buffer.getvalue()


def render_sample(
    seed: int, split: str, label: str, index: int, size: int, strength: float = 1.0
) -> bytes:
    """One JPEG, fully determined by (seed, split, class, index, size, strength)."""
    rng = np.random.default_rng([seed, SPLIT_DIRS.index(split), CLASS_DIRS.index(label), index])
    style = STYLES[split]
    image = render_real(rng, size)
    if label == "Fake":
        image = apply_swap_artefacts(
            rng, image, strength * style.strength_scale * rng.uniform(0.0, 1.0)
        )
    quality = int(rng.integers(style.quality[0], style.quality[1] + 1))
    return jpeg_bytes(image, quality)


def generate_dataset(
    out: Path, size: int, counts: dict[str, int], seed: int = 0, strength: float = 1.0
) -> dict[str, int]:
    """Write ``out/{Train,Validation,Test}/{Real,Fake}/*.jpg``; ``counts`` is per class;
    ``strength`` scales every fake's artefacts (2: a second, easier dataset whose fakes
    differ from the default's, for cross-dataset tests).

    Returns the number of files written per split. Existing files are overwritten only
    where the same name is generated again (the dataset is deterministic).
    """
    written: dict[str, int] = {}
    for split, per_class in counts.items():
        if split not in STYLES:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLIT_DIRS}")
        for label in CLASS_DIRS:
            folder = out / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                data = render_sample(seed, split, label, index, size, strength)
                (folder / f"{label.lower()}_{index:05d}.jpg").write_bytes(data)
        written[split] = 2 * per_class
    return written
