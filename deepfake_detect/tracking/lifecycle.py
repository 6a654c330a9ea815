"""Open (or reopen) an MLflow run and always close it with the right status.

SIGTERM and SIGINT are turned into :class:`Terminated`. Inside :func:`deferred_stop` (the
training loop) the first signal only asks to stop: the trainer finishes the step it is in,
keeps its checkpoint and then raises; a second signal stops at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import mlflow
from mlflow.entities import Run, RunTag
from mlflow.tracking import MlflowClient

from deepfake_detect.tracking.health import unwritable_store_cause
from deepfake_detect.tracking.run_state import Heartbeat, process_tags
from deepfake_detect.tracking.vocabulary import (
    ERROR_TAG,
    REAPED_TAG,
    RESUMABLE_TAG,
    TAG_VALUE_LIMIT,
)

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Terminated(BaseException):
    """SIGTERM or SIGINT arrived (``kill``, ``timeout``, a scheduler, Ctrl-C)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by signal {signal.Signals(signum).name}")

    @property
    def exit_status(self) -> int:
        """The shell's convention: 128 + the signal number (143 SIGTERM, 130 SIGINT)."""
        return 128 + self.signum


class _StopRequests:
    """The signal handler's state: whether stops are deferred, and a pending one."""

    deferring = False
    pending: int | None = None


def _on_stop_signal(signum: int, frame: object) -> None:
    if _StopRequests.deferring and _StopRequests.pending is None:
        _StopRequests.pending = signum
        log.warning(
            "%s: finishing the current step and saving the checkpoint (send it again to stop "
            "at once)",
            signal.Signals(signum).name,
        )
        return
    raise Terminated(signum)


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block SIGTERM and SIGINT raise :class:`Terminated` (main thread only);
    the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _on_stop_signal) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def deferred_stop() -> Iterator[None]:
    """Within the block the first stop signal is only noted (:func:`raise_if_stop_requested`);
    one noted but not yet acted on is raised when the block ends."""
    _StopRequests.deferring, _StopRequests.pending = True, None
    try:
        yield
    finally:
        _StopRequests.deferring = False
    raise_if_stop_requested()


def raise_if_stop_requested() -> None:
    """Raise :class:`Terminated` when a stop signal arrived during :func:`deferred_stop`."""
    if _StopRequests.pending is not None:
        signum, _StopRequests.pending = _StopRequests.pending, None
        raise Terminated(signum)


OUTCOME_TAGS = (ERROR_TAG, REAPED_TAG, RESUMABLE_TAG)  # what the last attempt's end said


def clear_outcome_tags(client: MlflowClient, run: Run) -> None:
    """Remove the tags of how a run ended (``error``, ``reaped``...) before it is reopened."""
    for key in OUTCOME_TAGS:
        if key in run.data.tags:
            client.delete_tag(run.info.run_id, key)


def _message(error: BaseException) -> str:
    cause = unwritable_store_cause(error)
    text = f"{type(error).__name__}: {error}" if cause is None else f"{cause}: {error}"
    return text[:TAG_VALUE_LIMIT]


@contextmanager
def tracked_run(
    client: MlflowClient,
    experiment_id: str,
    run_name: str,
    tags: dict[str, str],
    existing: Run | None = None,
    heartbeat_seconds: float = 60.0,
    closing_tags: Callable[[str, str], dict[str, str]] | None = None,
    system_metrics_seconds: float | None = 10.0,
) -> Iterator[Run]:
    """An active run (new, or ``existing`` reopened as RUNNING) that ends FINISHED, FAILED
    (error tagged) or KILLED (SIGTERM, SIGINT), never RUNNING while the store can be written.

    The run is the active fluent run, so ``mlflow.*`` calls (``mlflow.keras.log_model``) go
    to it; it sends a heartbeat while open. ``closing_tags(run_id, status)`` adds tags at the end
    (e.g. ``resumable``). MLflow's system metrics (CPU, memory, disk, network; GPU where
    pynvml sees one) are sampled every ``system_metrics_seconds`` (None or 0: off) as
    ``system/*`` metrics; a reopened run continues their steps.
    """
    while mlflow.active_run():  # a same-process earlier trial must not leak its run
        mlflow.end_run("KILLED")
    tags = {**tags, **process_tags()}
    if existing is None:
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    else:
        run = existing
        clear_outcome_tags(client, run)
        client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    run_id = run.info.run_id
    status = "FINISHED"
    reason: str | None = None
    with stop_signals_raise():
        try:
            mlflow.set_tracking_uri(client.tracking_uri)
            mlflow.start_run(run_id=run_id)  # an existing run goes back to RUNNING
            with (
                Heartbeat(client, run_id, heartbeat_seconds),
                system_metrics(client, run_id, system_metrics_seconds, existing is not None),
            ):
                yield run
        except (KeyboardInterrupt, Terminated) as stop:
            status, reason = "KILLED", str(stop) or "interrupted (KeyboardInterrupt)"
            log.warning("run %s stopped (%s): marked KILLED", run_id, reason)
            raise
        except BaseException as error:
            status, reason = "FAILED", _message(error)
            try:  # callers tell "failed in its run" from "failed before a run existed"
                error.mlflow_run_id = run_id
            except AttributeError:
                pass
            log.error("run %s failed: %s", run_id, reason)
            raise
        finally:
            close_run(client, run_id, status, reason, closing_tags)


@contextmanager
def system_metrics(
    client: MlflowClient, run_id: str, seconds: float | None, resume: bool
) -> Iterator[None]:
    """MLflow's ``SystemMetricsMonitor`` on ``run_id`` while the block runs (flushed at its
    end); it only saves information, so a monitor that cannot start is a warning."""
    if not seconds:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop lines
    try:
        monitor = SystemMetricsMonitor(
            run_id,
            sampling_interval=float(seconds),
            resume_logging=resume,
            tracking_uri=client.tracking_uri,
        )
        monitor.start()
    except Exception as error:  # e.g. a broken GPU driver under pynvml
        log.warning("system metrics are off for run %s: %s", run_id, error)
        yield
        return
    try:
        yield
    finally:
        monitor.finish()


def close_run(
    client: MlflowClient,
    run_id: str,
    status: str,
    reason: str | None,
    closing_tags: Callable[[str, str], dict[str, str]] | None = None,
) -> None:
    """Tag and end the run; when the store cannot be written any more, say so in one line
    (``runs reap`` closes it later) instead of burying the first error."""
    try:
        extra = dict(closing_tags(run_id, status)) if closing_tags else {}
        if reason:
            extra[ERROR_TAG] = reason
        if extra:
            client.log_batch(run_id, tags=[RunTag(k, v) for k, v in extra.items()])
        end_run(client, run_id, status)
    except Exception as error:
        if status == "FINISHED":
            raise
        log.error(
            "run %s could not be marked %s (%s); `deepfake-detect runs reap` marks it once the "
            "store can be written",
            run_id,
            status,
            unwritable_store_cause(error) or f"{type(error).__name__}: {error}",
        )
        stack = getattr(mlflow.tracking.fluent, "_active_run_stack", None)
        if stack is not None:  # forget the fluent run MLflow could not end
            stack.get().clear()


def end_run(client: MlflowClient, run_id: str, status: str) -> None:
    """Close the fluent run (if it is this one) and the run itself with ``status``."""
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status)
    else:
        client.set_terminated(run_id, status)
