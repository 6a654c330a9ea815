"""Tracking-store plumbing: which URI, which experiment, how a config becomes params.

No TensorFlow here; `leaderboard`, `promote` and the sweep callback use this module.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from filelock import FileLock

from deepfake_detect.config.paths import DEFAULT_ARTIFACT_ROOT, DEFAULT_TRACKING_URI, PROJECT_ROOT
from deepfake_detect.config.validation import ConfigError

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_EXPERIMENT_KIND = "custom_model_development"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """An explicit URI, else ``MLFLOW_TRACKING_URI``, else the project's SQLite store."""
    if uri:
        return str(uri)
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``sqlite:////abs`` is absolute), else None."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None
    return Path(unquote(parsed.path[1:])).absolute()


def store_client(uri: str):  # -> MlflowClient
    """A client whose tracking *and* registry URIs are ``uri``.

    ``MlflowClient(tracking_uri=...)`` alone takes its registry URI from process-global state
    (whatever an earlier ``mlflow.set_registry_uri`` left), so registry calls could go to
    another store; every client of this package comes from here.
    """
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


DATABASE_SCHEMES = ("sqlite", "postgresql")


def is_database_uri(uri: str) -> bool:
    """True for a database store (``sqlite:///``, ``postgresql[+driver]://``), not a server."""
    return urlparse(uri).scheme.split("+")[0] in DATABASE_SCHEMES


class StoreNotFoundError(LookupError):
    """A ``sqlite:///`` store that does not exist (commands that only read never create one)."""


def require_existing_store(uri: str) -> None:
    """Raise StoreNotFoundError when ``uri`` is a SQLite file that does not exist."""
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise StoreNotFoundError(
            f"no tracking store at {db}; train a model first (`make demo`) "
            "or pass --tracking-uri / set MLFLOW_TRACKING_URI"
        )


def artifact_location(uri: str) -> str | None:
    """Artifact root for new experiments: beside a SQLite DB (``<db dir>/artifacts``)."""
    if uri == DEFAULT_TRACKING_URI:
        return DEFAULT_ARTIFACT_ROOT.as_uri()
    db = sqlite_path(uri)
    return (db.parent / "artifacts").as_uri() if db else None


def ensure_experiment(uri: str, name: str) -> str:
    """Create the store and the experiment once (under a file lock) and return its id.

    SQLite schema creation is not safe when parallel sweep workers race on a new file, so the
    first caller creates it while the others wait on the lock.
    """
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(db) + ".lock")
    else:
        lock = None
    if lock:
        lock.acquire(timeout=600)
    try:
        client = store_client(uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            return client.create_experiment(
                name,
                artifact_location=artifact_location(uri),
                # the UI then opens on "Training runs", not the GenAI overview
                tags={EXPERIMENT_KIND_TAG: TRAINING_EXPERIMENT_KIND},
            )
        if experiment.lifecycle_stage == "deleted":
            raise ConfigError(
                f"experiment {name!r} is deleted in {uri}; restore it in the MLflow UI "
                "or choose another tracking.experiment"
            )
        return experiment.experiment_id
    finally:
        if lock:
            lock.release()


def flatten(config: Mapping, prefix: str = "") -> Iterator[tuple[str, object]]:
    """Yield ``("model.dropout", 0.3)`` pairs for every leaf of a nested mapping."""
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, prefix=f"{dotted}.")
        else:
            yield dotted, value


def git_commit(root: Path = PROJECT_ROOT) -> str:
    """The project's git commit (``-dirty`` when modified), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not commit:
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


# also as Hydra writes a multirun's overrides, with ":" escaped: http\://user\:password@host
_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][\w+.-]*\\?://)(?P<user>(?:\\.|[^/@\s:\\])*)(?P<colon>\\?:)"
    r"(?:\\.|[^/\s\\])*@"  # the password, up to the last @ before the host
)
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&](?:token|access_token|api_key|apikey|password|secret)=)[^&\s'\"]+", re.I
)


def suppress_mlflow_run_urls() -> None:
    """MLflow's own "View run ... at URL" line would print a password in the URI: our commands
    print the run's URL themselves, redacted."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` URI and every token
    query value replaced by ``***``: for anything a run records or prints."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}{m['colon']}***@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m['key']}***", text)


REFUSAL_HINTS = {
    401: "the server wants credentials: set MLFLOW_TRACKING_USERNAME and "
    "MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN",
    403: "the server refused this user: ask its admin for permission, check "
    "MLFLOW_TRACKING_USERNAME, or (a server reached under a name) its --allowed-hosts",
}


def refusal_status(error: BaseException) -> int | None:
    """401 or 403 when a tracking server refused the request's credentials, else None."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status in REFUSAL_HINTS:
        return status
    first = (str(error).strip().splitlines() or [""])[0]
    found = re.search(r"error code (40[13])\b|\b(40[13]) Client", first)
    return int(found[1] or found[2]) if found else None


def credentials_refused(error: BaseException) -> bool:
    """True when a tracking server answered 401 or 403 (missing or wrong credentials)."""
    return refusal_status(error) is not None


def error_line(error: BaseException) -> str:
    """An error's first line for the user, redacted; a server's 401/403 says what to do."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else repr(error)
    status = refusal_status(error)
    if status is not None:
        first = f"{first} ({REFUSAL_HINTS[status]})"
    return redact(first)
