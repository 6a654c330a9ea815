"""Open an MLflow run and always close it with the right status."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from deepfake_detect.tracking.vocabulary import ERROR_TAG, TAG_VALUE_LIMIT

log = logging.getLogger(__name__)


class Terminated(BaseException):
    """SIGTERM arrived (``kill``, ``timeout``, a scheduler's time limit): stop like Ctrl-C."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"terminated by signal {signal.Signals(signum).name}")


@contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` (main thread only), so the run is
    closed KILLED instead of left RUNNING; the previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def tracked_run(
    client: MlflowClient,
    experiment_id: str,
    run_name: str,
    tags: dict[str, str],
) -> Iterator[Run]:
    """An active run that ends FINISHED, FAILED (error tagged) or KILLED (Ctrl-C, SIGTERM),
    never RUNNING.

    The run is created with ``client`` and made the active fluent run, so ``mlflow.*`` calls
    (e.g. ``mlflow.keras.log_model``) go to it.
    """
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    run_id = run.info.run_id
    status = "FINISHED"
    with sigterm_as_exception():
        try:
            mlflow.set_tracking_uri(client.tracking_uri)
            mlflow.start_run(run_id=run_id)
            yield run
        except (KeyboardInterrupt, Terminated) as stop:
            status = "KILLED"
            reason = str(stop) or "interrupted (KeyboardInterrupt)"
            client.set_tag(run_id, ERROR_TAG, reason)
            log.warning("run %s stopped (%s): marked KILLED", run_id, reason)
            raise
        except BaseException as error:
            status = "FAILED"
            message = f"{type(error).__name__}: {error}"[:TAG_VALUE_LIMIT]
            client.set_tag(run_id, ERROR_TAG, message)
            log.error("run %s failed: %s", run_id, message)
            raise
        finally:
            end_run(client, run_id, status)


def end_run(client: MlflowClient, run_id: str, status: str) -> None:
    """Close the fluent run (if it is this one) and the run itself with ``status``."""
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status)
    else:
        client.set_terminated(run_id, status)
