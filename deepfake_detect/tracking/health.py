"""Is the tracking store usable? A dead server found up front, an unwritable store named.

No TensorFlow and no MLflow import: training, the sweep callback and every ``deepfake-detect``
command call :func:`check_store_reachable` before they do anything slow, and turn an error
caused by a full disk or a read-only store into one line with :func:`unwritable_store_cause`.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path
from urllib.parse import urlparse

from deepfake_detect.tracking.store import redact

DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds: tracking.connect_timeout, --connect-timeout


class StoreUnavailableError(RuntimeError):
    """The tracking store cannot be reached (the message says which and what to do)."""


def check_store_reachable(uri: str, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
    """Raise StoreUnavailableError unless ``uri`` answers within ``timeout`` seconds.

    A tracking server must answer ``/health`` (it is retried until the deadline, so a server
    that is still starting is waited for); a PostgreSQL store must accept a connection.
    SQLite files are checked by the commands themselves (reading never creates one).
    """
    scheme = urlparse(uri).scheme.split("+")[0]
    if scheme in ("http", "https"):
        _check_server(uri, timeout)
    elif scheme == "postgresql":
        _check_postgres(uri, timeout)


def _unavailable(uri: str, timeout: float, reason: str) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"tracking store {redact(uri)} did not answer within {timeout:g} s ({reason}); "
        "start it (`make server`), check tracking.uri / --tracking-uri / MLFLOW_TRACKING_URI, "
        "or allow longer with tracking.connect_timeout / --connect-timeout"
    )


def _check_server(uri: str, timeout: float) -> None:
    import requests

    deadline = time.monotonic() + timeout
    reason = "no answer"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _unavailable(uri, timeout, reason)
        try:
            response = requests.get(uri.rstrip("/") + "/health", timeout=min(left, 5.0))
        except requests.ConnectionError:
            reason = "connection refused or host unreachable"
        except requests.Timeout:
            reason = "timed out"
        else:
            if response.ok:
                return
            reason = f"/health answered HTTP {response.status_code}"
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def _check_postgres(uri: str, timeout: float) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": max(1, int(timeout))})
    try:
        with engine.connect():
            return
    except sqlalchemy.exc.OperationalError as error:
        first = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise _unavailable(uri, timeout, first) from None
    finally:
        engine.dispose()


def require_free_space(folder: Path, needed: int, what: str) -> None:
    """Raise OSError(ENOSPC) naming ``folder`` when it has less than ``needed`` bytes free.

    HDF5 (Keras' weights files) crashes the process on a full disk instead of raising, so
    writers check first.
    """
    import shutil

    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device: {what} needs about {needed / 1e6:.1f} MB, "
            f"{free / 1e6:.1f} MB are free",
            str(folder),
        )


_UNWRITABLE_ERRNOS = {
    errno.ENOSPC: "the disk is full (No space left on device)",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
}
_UNWRITABLE_MESSAGES = {
    "database or disk is full": "the disk is full (database or disk is full)",
    "attempt to write a readonly database": "the store is read-only",
    "no space left on device": "the disk is full (No space left on device)",
    "read-only file system": "the file system is read-only",
}


def unwritable_store_cause(error: BaseException) -> str | None:
    """Why the store (or its artifacts) could not be written, when ``error`` or any error it
    was raised from is a full disk or a read-only store; else None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _UNWRITABLE_ERRNOS:
            where = f" at {current.filename}" if current.filename else ""
            return _UNWRITABLE_ERRNOS[current.errno] + where
        text = str(current).lower()
        for needle, cause in _UNWRITABLE_MESSAGES.items():
            if needle in text:
                return cause
        current = current.__cause__ or current.__context__
    return None
