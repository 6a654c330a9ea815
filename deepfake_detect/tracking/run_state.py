"""Liveness and resumability of runs: heartbeats, checkpoint folders, reaping, listing.

No TensorFlow: ``deepfake-detect runs list|reap`` and the trainer share this module. A running
training (and a sweep's parent) sets the ``heartbeat`` tag every ``trainer.heartbeat_seconds``;
a RUNNING run without a recent one was killed without a chance to say so (SIGKILL, power loss)
and ``runs reap`` marks it KILLED.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run, RunTag
from mlflow.tracking import MlflowClient

from deepfake_detect.tracking.store import sqlite_path
from deepfake_detect.tracking.vocabulary import (
    CHECKPOINT_EPOCH_TAG,
    ERROR_TAG,
    HEARTBEAT_TAG,
    HOST_TAG,
    LAST_EPOCH_TAG,
    PARENT_TAG,
    PID_TAG,
    REAPED_TAG,
    RESUMABLE_TAG,
    RUN_TYPE_TAG,
    SLURM_JOB_TAG,
    SLURM_RESTARTS_TAG,
)

log = logging.getLogger(__name__)

CHECKPOINT_ARTIFACT = "checkpoint"  # artifact folder of checkpoints mirrored to a server
EPOCH_FOLDER = "epoch-{:04d}"
KEPT_CHECKPOINTS = 2  # the newest and the one before (should the newest be unreadable)
LATEST_FILE = "LATEST"  # names the newest complete epoch folder in the artifact mirror


def heartbeat_age(run: Run, now: float | None = None) -> float:
    """Seconds since the run's last heartbeat (its start when it never sent one)."""
    now = time.time() if now is None else now
    beat = run.data.tags.get(HEARTBEAT_TAG)
    try:
        last = float(beat) if beat is not None else run.info.start_time / 1000
    except ValueError:
        last = run.info.start_time / 1000
    return max(0.0, now - last)


def host_identity() -> str:
    """This machine and process namespace: hostname, boot id, pid namespace (containers that
    share a hostname do not share the last two)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        boot = namespace = "?"
    return f"{socket.gethostname()}/{boot}/{namespace}"


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, after the command name


def slurm_tags() -> dict[str, str]:
    """The SLURM job this process runs in: ``slurm_job_id`` as ``squeue`` and ``scontrol`` name
    it (``ARRAYJOB_TASK`` for a sweep's job array) and ``slurm_restart_count`` (requeues)."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return {}
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return {
        SLURM_JOB_TAG: f"{array}_{task}" if array and task else job,
        SLURM_RESTARTS_TAG: os.environ.get("SLURM_RESTART_COUNT", "0"),
    }


def process_tags() -> dict[str, str]:
    """``host`` and ``pid`` (with its start time) of this process, and its SLURM job: a resume
    or reap on the same host tells a dead process from a live one without waiting for the
    heartbeat."""
    pid = os.getpid()
    return {HOST_TAG: host_identity(), PID_TAG: f"{pid}:{_start_time(pid) or '?'}", **slurm_tags()}


def process_gone(run: Run) -> bool:
    """True when the run's process was on this host (same namespace) and no longer exists
    or its pid now belongs to another process (a SIGKILL, an OOM kill)."""
    if run.data.tags.get(HOST_TAG) != host_identity():
        return False
    pid, _, started = run.data.tags.get(PID_TAG, "").partition(":")
    if not pid.isdigit() or started in ("", "?"):
        return False
    return _start_time(int(pid)) != started


def resumable_once_stopped(run: Run) -> bool:
    """Whether a RUNNING run could continue if it were stopped now: it has a checkpoint, or
    it has not finished an epoch yet."""
    tags = run.data.tags
    return CHECKPOINT_EPOCH_TAG in tags or LAST_EPOCH_TAG not in tags


class Heartbeat:
    """Context manager: the ``heartbeat`` tag now and every ``every`` seconds (a daemon
    thread) until the block ends. A failed beat is a warning, never an error."""

    def __init__(self, client: MlflowClient, run_id: str, every: float) -> None:
        self.client = client
        self.run_id = run_id
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._warned = False

    def beat(self) -> None:
        """Set the tag to now."""
        try:
            self.client.set_tag(self.run_id, HEARTBEAT_TAG, str(int(time.time())))
        except Exception as error:  # liveness only: the run goes on
            if not self._warned:
                log.warning("heartbeat of run %s not written: %s", self.run_id, error)
                self._warned = True

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass(frozen=True)
class CheckpointStore:
    """Where a run's checkpoints live: ``folder/epoch-NNNN/`` (a folder appears complete or
    not at all); with ``mirror`` (tracking servers) also in the run's ``checkpoint/``
    artifacts, so another machine can resume."""

    folder: Path
    mirror: bool

    def complete(self) -> list[Path]:
        """The complete local epoch folders, newest first."""
        if not self.folder.is_dir():
            return []
        return sorted((p for p in self.folder.glob("epoch-*") if p.is_dir()), reverse=True)

    def staging(self, epoch: int) -> Path:
        """An empty temporary folder to write epoch ``epoch``'s checkpoint into."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{EPOCH_FOLDER.format(epoch)}.", dir=self.folder))

    def commit(self, staged: Path, epoch: int, client: MlflowClient, run_id: str) -> Path:
        """Publish a staged checkpoint as the newest (synced to disk, atomic rename), then
        drop all but the newest KEPT_CHECKPOINTS."""
        final = self.folder / EPOCH_FOLDER.format(epoch)
        for path in staged.iterdir():
            _fsync(path)
        _fsync(staged)
        if final.exists():
            shutil.rmtree(final)
        staged.rename(final)
        _fsync(self.folder)
        for old in self.complete()[KEPT_CHECKPOINTS:]:
            shutil.rmtree(old, ignore_errors=True)
        for orphan in self.folder.glob(".epoch-*"):  # staging folders of a killed process
            shutil.rmtree(orphan, ignore_errors=True)
        if self.mirror:
            self._upload(final, client, run_id)
        return final

    def _upload(self, final: Path, client: MlflowClient, run_id: str) -> None:
        previous = self._remote_latest(run_id)
        client.log_artifacts(run_id, str(final), f"{CHECKPOINT_ARTIFACT}/{final.name}")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / LATEST_FILE).write_text(final.name)
            client.log_artifact(run_id, str(Path(tmp) / LATEST_FILE), CHECKPOINT_ARTIFACT)
        if previous and previous != final.name:
            self._delete_remote(client, run_id, f"{CHECKPOINT_ARTIFACT}/{previous}")

    def _remote_latest(self, run_id: str) -> str | None:
        import mlflow.artifacts

        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = mlflow.artifacts.download_artifacts(
                    run_id=run_id,
                    artifact_path=f"{CHECKPOINT_ARTIFACT}/{LATEST_FILE}",
                    dst_path=tmp,
                )
            except Exception:  # no checkpoint uploaded yet
                return None
            return Path(path).read_text().strip() or None

    def fetch(self, run_id: str, expected: str | None) -> list[Path]:
        """The checkpoints to try, newest first; the mirror's newest is downloaded when this
        machine has none or only one older than ``expected`` (the run's checkpoint epoch)."""
        local = self.complete()
        newest = local[0].name if local else None
        wanted = EPOCH_FOLDER.format(int(expected)) if expected else None
        if not self.mirror or (newest and wanted and newest >= wanted):
            if newest and wanted and newest < wanted:
                log.warning(
                    "the local checkpoint %s is older than the run's epoch %s (it trained on "
                    "for a while elsewhere): epochs after it are trained again",
                    local[0],
                    expected,
                )
            return local
        import mlflow.artifacts

        name = self._remote_latest(run_id)
        if name is None:
            return local
        self.folder.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.folder))
        downloaded = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{CHECKPOINT_ARTIFACT}/{name}", dst_path=str(staged)
        )
        final = self.folder / name
        if final.exists():
            shutil.rmtree(final)
        Path(downloaded).rename(final)
        shutil.rmtree(staged, ignore_errors=True)
        return self.complete()

    def remove(self, client: MlflowClient, run_id: str) -> None:
        """Delete every checkpoint of the run (local folder and mirror)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.mirror:
            self._delete_remote(client, run_id, CHECKPOINT_ARTIFACT)

    @staticmethod
    def _delete_remote(client: MlflowClient, run_id: str, path: str) -> None:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        try:
            repo = get_artifact_repository(client.get_run(run_id).info.artifact_uri)
            repo.delete_artifacts(path)
        except Exception as error:  # space only: the run is complete either way
            log.warning("could not delete %s of run %s: %s", path, run_id, error)


def checkpoint_store(
    uri: str, run_id: str, configured: str | None, log_dir: Path
) -> CheckpointStore:
    """A run's checkpoints: ``trainer.checkpoint.dir`` when set; beside a SQLite store
    (``mlruns/checkpoints/<run_id>``); else a local folder mirrored to the run's artifacts."""
    db = sqlite_path(uri)
    if configured:
        return CheckpointStore(Path(configured) / run_id, mirror=db is None)
    if db is not None:
        return CheckpointStore(db.parent / "checkpoints" / run_id, mirror=False)
    return CheckpointStore(log_dir / "checkpoints" / run_id, mirror=True)


def _fsync(path: Path) -> None:
    """Flush a file or folder to disk (a power loss must not leave a half checkpoint)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 60}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d`` (a bare number is minutes) -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration; use e.g. 90s, 30m, 2h or 1d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True)
class RunState:
    """One line of ``runs list``."""

    run_id: str
    name: str
    run_type: str
    status: str
    last_epoch: str
    heartbeat_age: float | None  # seconds; None once the run ended
    resumable: bool
    parent: str


def run_state(run: Run, now: float) -> RunState:
    """What ``runs list`` shows of ``run``."""
    tags = run.data.tags
    running = run.info.status == "RUNNING"  # heartbeat age only means something then
    return RunState(
        run_id=run.info.run_id,
        name=run.info.run_name or "",
        run_type=tags.get(RUN_TYPE_TAG, ""),
        status=run.info.status,
        last_epoch=tags.get(LAST_EPOCH_TAG, ""),
        heartbeat_age=heartbeat_age(run, now) if running else None,
        resumable=run.info.status in ("KILLED", "FAILED") and tags.get(RESUMABLE_TAG) == "true",
        parent=tags.get(PARENT_TAG, ""),
    )


def reap(client: MlflowClient, runs: list[Run], stale_after: float, dry_run: bool) -> list[Run]:
    """Mark KILLED every RUNNING run whose heartbeat is older than ``stale_after`` seconds or
    whose process on this host is gone (tags ``reaped``, ``error`` and, with a checkpoint,
    ``resumable``); return them."""
    now = time.time()
    stale = [
        r
        for r in runs
        if r.info.status == "RUNNING" and (heartbeat_age(r, now) > stale_after or process_gone(r))
    ]
    if dry_run:
        return stale
    for run in stale:
        age = heartbeat_age(run, now)
        why = (
            "its process on this host is gone"
            if process_gone(run)
            else f"no heartbeat for {age / 60:.0f} min"
        )
        tags = [RunTag(REAPED_TAG, "true"), RunTag(ERROR_TAG, f"reaped: {why}")]
        if resumable_once_stopped(run):
            tags.append(RunTag(RESUMABLE_TAG, "true"))
        client.log_batch(run.info.run_id, tags=tags)
        client.set_terminated(run.info.run_id, "KILLED")
    return stale
