"""Progress of long loops over images: a tqdm bar on a terminal, log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 30.0  # log-line interval when stderr is not a terminal (SLURM logs, CI)


@contextmanager
def reported_progress(total: int, what: str) -> Iterator[Callable[[int], None]]:
    """``update(n)`` for ``n`` more images: a tqdm bar (count, rate, ETA) on a terminal,
    else a log line every PROGRESS_EVERY_S seconds and at the end."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, desc=what, unit="img", file=sys.stderr, leave=False) as bar:
            yield bar.update
        return
    start = last = time.monotonic()
    done = 0

    def update(count: int) -> None:
        nonlocal done, last
        done += count
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S or done == total:
            rate = done / max(now - start, 1e-9)
            eta = (total - done) / rate if rate > 0 else float("inf")
            log.info("%s: %d/%d images, %.0f img/s, ETA %.0f s", what, done, total, rate, eta)
            last = now

    yield update
