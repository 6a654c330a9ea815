"""A store that local runs wrote (local artifact paths) is later served to a team:
``deepfake-detect artifacts move --to DEST`` hands its artifacts to the server's proxy, and the
old runs, their logged model and its registered version still load through the server."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from deepfake_detect.tracking.store import store_client
from tests.conftest import detect, mlflow_server

pytestmark = pytest.mark.slow


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input * 2


def test_artifacts_move_hands_a_local_store_to_the_servers_proxy(tmp_path):
    served = tmp_path / "served"  # what the server will serve: mlflow.db and artifacts/
    served.mkdir()
    database = f"sqlite:///{served / 'mlflow.db'}"
    local_root = tmp_path / "laptop-artifacts"  # where the local runs put their files
    client = store_client(database)
    experiment_id = client.create_experiment("local", artifact_location=local_root.as_uri())
    run_id = client.create_run(experiment_id).info.run_id
    client.log_text(run_id, "hello", "notes/hello.txt")
    mlflow.set_tracking_uri(database)
    with mlflow.start_run(run_id=run_id):
        model = mlflow.pyfunc.log_model(name="model", python_model=Doubler(), pip_requirements=[])
    mlflow.register_model(model.model_uri, "doubler")
    destination = served / "artifacts"
    move = ["artifacts", "move", "--to", str(destination), "--tracking-uri", database]

    running = client.create_run(experiment_id).info.run_id
    refused = detect(move, tmp_path)  # its artifacts would move under it
    assert refused.returncode == 2 and running in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    client.set_terminated(running)
    dry = detect([*move, "--dry-run"], tmp_path)
    assert dry.returncode == 0 and "would move" in dry.stdout, dry.stderr
    assert (local_root / run_id / "artifacts" / "notes" / "hello.txt").exists()
    assert client.get_experiment(experiment_id).artifact_location == local_root.as_uri()

    moved = detect(move, tmp_path)
    assert moved.returncode == 0, moved.stderr
    assert "2 experiments, 2 runs, 1 logged models, 1 model versions" in moved.stdout
    assert not (local_root / run_id).exists()  # moved, not copied
    again = detect(move, tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stdout

    with mlflow_server(served) as url:
        remote = MlflowClient(url)
        location = remote.get_experiment(experiment_id).artifact_location
        assert location == f"mlflow-artifacts:/{experiment_id}"
        notes = remote.download_artifacts(run_id, "notes/hello.txt", str(tmp_path))
        assert open(notes).read() == "hello"
        mlflow.set_tracking_uri(url)
        loaded = mlflow.pyfunc.load_model("models:/doubler/1")
        assert list(loaded.predict(np.array([1.0, 2.0]))) == [2.0, 4.0]
        new_run = remote.create_run(experiment_id).info.run_id
        remote.log_text(new_run, "new", "new.txt")
        assert (destination / experiment_id / new_run / "artifacts" / "new.txt").exists()
        wrong = detect([*move[:-2], "--tracking-uri", url], tmp_path)  # the server, not its DB
        assert wrong.returncode == 2 and "database" in wrong.stderr


def test_two_folders_that_would_land_in_one_place_are_refused(tmp_path):
    """Runs logged under two roots with the same run folder name would both move to
    DEST/<experiment>/<name>: refused before anything moves."""
    import sqlalchemy as sa

    database = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = store_client(database)
    experiment_id = client.create_experiment("two-roots", artifact_location=str(tmp_path / "a"))
    engine = sa.create_engine(database)
    for root in ("a", "b"):  # each run then lives in <root>/same/artifacts
        run_id = client.create_run(experiment_id).info.run_id
        client.log_text(run_id, root, "which.txt")
        client.set_terminated(run_id)
        (tmp_path / root).mkdir(exist_ok=True)
        (tmp_path / "a" / run_id).rename(tmp_path / root / "same")
        with engine.begin() as db:
            db.execute(
                sa.text("UPDATE runs SET artifact_uri = :uri WHERE run_uuid = :id"),
                {"uri": f"file://{tmp_path / root / 'same' / 'artifacts'}", "id": run_id},
            )
    engine.dispose()
    move = ["artifacts", "move", "--to", str(tmp_path / "dest"), "--tracking-uri", database]
    refused = detect(move, tmp_path)
    assert refused.returncode == 2 and "would both move to" in refused.stderr, refused.stderr
    assert (tmp_path / "a" / "same" / "artifacts" / "which.txt").read_text() == "a"
    assert (tmp_path / "b" / "same" / "artifacts" / "which.txt").read_text() == "b"
