"""Collect image paths from files/folders and decode them exactly like training inputs."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepfake_detect.data.images import DECODE_ERRORS, load_image
from deepfake_detect.data.layout import DataError, is_image_file, list_images

log = logging.getLogger(__name__)


@dataclass
class ImageBatch:
    """Decoded float32 images (0..255) with their paths."""

    paths: list[Path]
    images: np.ndarray


@dataclass
class ImageInputs:
    """Images to score: ``explicit`` were named by the user, ``found`` came from folders."""

    explicit: list[Path] = field(default_factory=list)
    found: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return self.explicit + self.found


def collect(inputs: Sequence[str | Path]) -> ImageInputs:
    """Files must be images; folders are searched recursively and non-images ignored."""
    collected = ImageInputs()
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            images = list_images(path)
            if not images:
                raise DataError(f"{path} holds no images (.jpg/.jpeg/.png/.bmp/.gif/.webp)")
            collected.found.extend(images)
        elif path.is_file():
            if not is_image_file(path):
                raise DataError(f"{path} is not an image (.jpg/.jpeg/.png/.bmp/.gif/.webp)")
            collected.explicit.append(path)
        else:
            raise DataError(f"{path} does not exist")
    return collected


def decode_batches(inputs: ImageInputs, size: int, batch_size: int) -> Iterator[ImageBatch]:
    """Decoded batches; an unreadable named file raises, one found in a folder is skipped."""
    explicit = set(inputs.explicit)
    paths: list[Path] = []
    images: list[np.ndarray] = []
    for path in inputs.paths:
        try:
            images.append(load_image(path, size).astype(np.float32))
        except DECODE_ERRORS as error:
            if path in explicit:
                raise DataError(f"cannot read image {path}: {error}") from error
            log.warning("skipping unreadable image %s (%s)", path, error)
            inputs.skipped.append(str(path))
            continue
        paths.append(path)
        if len(paths) == batch_size:
            yield ImageBatch(paths, np.stack(images))
            paths, images = [], []
    if paths:
        yield ImageBatch(paths, np.stack(images))
