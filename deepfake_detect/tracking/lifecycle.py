"""Open an MLflow run and always close it with the right status."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from deepfake_detect.tracking.vocabulary import ERROR_TAG, TAG_VALUE_LIMIT

log = logging.getLogger(__name__)


@contextmanager
def tracked_run(
    client: MlflowClient,
    experiment_id: str,
    run_name: str,
    tags: dict[str, str],
) -> Iterator[Run]:
    """An active run that ends FINISHED, FAILED (error tagged) or KILLED (Ctrl-C), never RUNNING.

    The run is created with ``client`` and made the active fluent run, so ``mlflow.*`` calls
    (e.g. ``mlflow.keras.log_model``) go to it.
    """
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    run_id = run.info.run_id
    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.start_run(run_id=run_id)
    try:
        yield run
    except KeyboardInterrupt:
        client.set_tag(run_id, ERROR_TAG, "interrupted (KeyboardInterrupt)")
        mlflow.end_run("KILLED")
        log.warning("run %s interrupted: marked KILLED", run_id)
        raise
    except BaseException as error:
        message = f"{type(error).__name__}: {error}"[:TAG_VALUE_LIMIT]
        try:
            client.set_tag(run_id, ERROR_TAG, message)
        finally:
            mlflow.end_run("FAILED")
        log.error("run %s failed: %s", run_id, message)
        raise
    else:
        mlflow.end_run("FINISHED")
