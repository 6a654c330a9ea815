"""Long runs survive: checkpoints, resume into the same run, signals, heartbeats and reaping,
relaunched sweeps, a dead or full store. Every CLI behaviour runs in a subprocess."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from deepfake_detect.tracking.health import unwritable_store_cause
from deepfake_detect.tracking.store import ensure_experiment, store_client
from deepfake_detect.tracking.vocabulary import (
    CHECKPOINT_EPOCH_TAG,
    EPOCH_KEYS,
    PARENT_TAG,
    REAPED_TAG,
    RESUMABLE_TAG,
    RUN_TYPE_TAG,
    SWEEP,
)
from tests.conftest import detect, run_cli, tiny_overrides

EXPERIMENT = "deepfake_detect"


def signal_once(
    marker: Path, epoch: int, signum: int = 15, job: int | None = None, at_train_end=False
) -> list[str]:
    """Overrides adding tests.helpers.SignalOnce (the same on every attempt of a run)."""
    overrides = [
        "+trainer.callbacks.stop._target_=tests.helpers.SignalOnce",
        f"+trainer.callbacks.stop.epoch={epoch}",
        f"+trainer.callbacks.stop.marker={marker}",
        f"+trainer.callbacks.stop.signum={signum}",
        f"+trainer.callbacks.stop.at_train_end={str(at_train_end).lower()}",
    ]
    return overrides + ([f"+trainer.callbacks.stop.job={job}"] if job is not None else [])


def train(tiny_data: Path, tmp_path: Path, uri: str, *extra: str) -> subprocess.CompletedProcess:
    overrides = tiny_overrides(tiny_data, uri, tmp_path / "cache")
    return run_cli(
        ["-m", "deepfake_detect.train", *overrides, "registry.register=false", *extra],
        cwd=tmp_path,
    )


def runs(uri: str):
    client = store_client(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client, ([] if experiment is None else client.search_runs([experiment.experiment_id]))


def steps(client, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def history(client, run_id: str, key: str) -> list[float]:
    return [m.value for m in client.get_metric_history(run_id, key)]


@pytest.mark.training
def test_sigterm_then_resume_continues_the_same_run(tiny_data, tmp_path):
    """SIGTERM in epoch 2 of 5: KILLED, resumable, exit 143; trainer.resume=<id> finishes the
    same run with epochs 0..4 logged exactly once, as an uninterrupted run trains them."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    marker = tmp_path / "signalled"
    args = ["trainer.epochs=5", *signal_once(marker, epoch=2)]
    first = train(tiny_data, tmp_path, uri, *args)
    assert first.returncode == 143, first.stderr[-3000:]
    assert "trainer.resume=auto" in first.stderr
    client, (killed,) = runs(uri)
    run_id = killed.info.run_id
    assert killed.info.status == "KILLED"
    assert killed.data.tags[RESUMABLE_TAG] == "true"
    assert killed.data.tags[CHECKPOINT_EPOCH_TAG] == "1"  # epoch 2 was abandoned mid-way
    assert steps(client, run_id, "train_loss") == [0, 1]
    checkpoints = tmp_path / "store" / "checkpoints" / run_id
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch-0000", "epoch-0001"]
    # a newest checkpoint damaged (a disk error): the resume falls back to the one before,
    # trains epoch 1 again without logging it twice, and still matches an uninterrupted run
    (checkpoints / "epoch-0001" / "model.weights.h5").write_bytes(b"not HDF5")

    resumed = train(tiny_data, tmp_path, uri, *args, f"trainer.resume={run_id}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming run" in resumed.stdout
    assert "epoch-0001 is unreadable" in resumed.stdout + resumed.stderr
    client, found = runs(uri)
    assert [r.info.run_id for r in found] == [run_id]
    run = found[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["resume_count"] == "1"
    (dataset,) = run.inputs.dataset_inputs  # the UI's Dataset column, logged once
    assert dataset.dataset.digest == run.data.tags["dataset_fingerprint"]
    assert str(tiny_data) in dataset.dataset.source
    assert run.data.tags["mlflow.source.name"] == "deepfake_detect.train"
    assert run.data.tags["mlflow.user"]
    for key in (*EPOCH_KEYS, "lr"):
        assert steps(client, run_id, key) == [0, 1, 2, 3, 4], key
    assert not checkpoints.exists()  # removed once the run finished

    marker.unlink()  # the reference run: same config, never interrupted (marker re-created)
    marker.touch()
    reference = train(tiny_data, tmp_path, uri, *args)
    assert reference.returncode == 0, reference.stderr[-3000:]
    client, found = runs(uri)
    (other,) = [r for r in found if r.info.run_id != run_id]
    for key in ("train_loss", "val_auc", "val_loss"):
        assert history(client, run_id, key) == pytest.approx(
            history(client, other.info.run_id, key), rel=1e-4
        ), key

    board = detect(
        ["leaderboard", "--tracking-uri", uri, "--out", str(tmp_path / "board.csv")], tmp_path
    )
    assert board.returncode == 0, board.stderr
    rows = (tmp_path / "board.csv").read_text().splitlines()
    assert sum(run_id in row for row in rows) == 1


@pytest.mark.training
def test_sigkill_reap_then_resume(tiny_data, tmp_path):
    """SIGKILL leaves RUNNING; a resume is refused while its heartbeat is fresh, `runs reap`
    marks it KILLED (resumable), a changed config is refused naming the key, then it resumes."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    args = ["trainer.epochs=3", *signal_once(tmp_path / "killed", epoch=1, signum=9)]
    first = train(tiny_data, tmp_path, uri, *args)
    assert first.returncode == -9
    client, (run,) = runs(uri)
    run_id = run.info.run_id
    assert run.info.status == "RUNNING"

    reap = ["runs", "reap", "--tracking-uri", uri]
    gone = detect([*reap, "--dry-run"], tmp_path)  # its pid on this host no longer exists
    assert gone.returncode == 0 and run_id in gone.stdout, gone.stdout + gone.stderr

    client.set_tag(run_id, "pid", str(os.getpid()))  # as if its process were still alive
    refused = train(tiny_data, tmp_path, uri, *args, f"trainer.resume={run_id}")
    assert refused.returncode == 2
    assert "still RUNNING" in refused.stderr and "runs reap" in refused.stderr
    listing = detect(["runs", "list", "--tracking-uri", uri], tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert run_id in listing.stdout and "RUNNING" in listing.stdout
    live = detect([*reap, "--dry-run"], tmp_path)  # alive, heartbeat fresh: not reaped
    assert run_id not in live.stdout

    reap += ["--stale-after", "0s"]
    dry = detect([*reap, "--dry-run"], tmp_path)
    assert dry.returncode == 0 and run_id in dry.stdout
    assert client.get_run(run_id).info.status == "RUNNING"
    reaped = detect(reap, tmp_path)
    assert reaped.returncode == 0 and run_id in reaped.stdout
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags[REAPED_TAG] == "true" and run.data.tags[RESUMABLE_TAG] == "true"
    listing = detect(["runs", "list", "--tracking-uri", uri, "--status", "KILLED"], tmp_path)
    assert run_id in listing.stdout and "yes" in listing.stdout

    changed = train(
        tiny_data, tmp_path, uri, *args, "model.dropout=0.5", f"trainer.resume={run_id}"
    )
    assert changed.returncode == 2
    assert "model.dropout" in changed.stderr and "resume_allow_changes" in changed.stderr

    resumed = train(tiny_data, tmp_path, uri, *args, "trainer.resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert steps(client, run_id, "val_auc") == [0, 1, 2]


def multirun(tiny_data: Path, tmp_path: Path, uri: str, *overrides: str):
    overrides = (*tiny_overrides(tiny_data, uri, tmp_path / "cache"), *overrides)
    return run_cli(["-m", "deepfake_detect.train", "-m", *overrides], cwd=tmp_path)


def sweep_runs(uri: str):
    client, found = runs(uri)
    parents = [r for r in found if r.data.tags.get(RUN_TYPE_TAG) == SWEEP]
    children = [r for r in found if r.data.tags.get(PARENT_TAG)]
    return client, parents, children


@pytest.mark.slow
@pytest.mark.training
def test_killed_sweep_relaunched_trains_only_the_rest(tiny_data, tmp_path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    grid = [
        "model.dropout=0.1,0.3",
        "optimizer.lr=0.001,0.01",
        *signal_once(tmp_path / "signalled", epoch=1, job=2),
    ]
    first = multirun(tiny_data, tmp_path, uri, *grid)
    assert first.returncode == 143, first.stderr[-3000:]
    client, parents, children = sweep_runs(uri)
    assert [p.info.status for p in parents] == ["KILLED"]
    assert sorted(c.info.status for c in children) == ["FINISHED", "FINISHED", "KILLED"]

    again = multirun(tiny_data, tmp_path, uri, *grid)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already FINISHED") == 2
    assert again.stdout.count("attempt 2") == 1  # the killed job continues
    client, parents, children = sweep_runs(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4
    assert {c.data.tags[PARENT_TAG] for c in children} == {parents[0].info.run_id}
    assert all(c.info.status == "FINISHED" for c in children)
    for child in children:
        assert steps(client, child.info.run_id, "train_loss") == [0, 1]
    assert parents[0].data.metrics["children"] == 4
    assert parents[0].data.metrics["children_failed"] == 0
    summary_steps = steps(client, parents[0].info.run_id, "children")
    assert len(summary_steps) == len(set(summary_steps))  # one summary per launch


def test_sweep_whose_every_job_fails_exits_nonzero(tmp_path):
    """Jobs failing before their run exists (missing data) are counted; all failed: the
    parent is FAILED and the command exits 1."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    result = multirun(tmp_path / "no_such_data", tmp_path, uri, "model.dropout=0.1,0.3")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "all 2 jobs of the sweep failed" in result.stderr
    _, parents, children = sweep_runs(uri)
    assert [p.info.status for p in parents] == ["FAILED"]
    assert parents[0].data.metrics["children"] == 2
    assert parents[0].data.metrics["children_failed"] == 2
    assert sorted(c.data.params["model.dropout"] for c in children) == ["0.1", "0.3"]
    assert all("no_such_data" in c.data.tags["error"] for c in children)


@pytest.mark.slow
@pytest.mark.training
def test_relaunched_optuna_sweep_continues_its_study(tiny_data, tmp_path):
    import yaml

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    search = ["hparams_search=optuna_dropout_lr", "trainer.epochs=1"]
    first = multirun(tiny_data, tmp_path, uri, *search, "hydra.sweeper.n_trials=2")
    assert first.returncode == 0, first.stderr[-3000:]
    again = multirun(
        tiny_data,
        tmp_path,
        uri,
        *search,
        "hydra.sweeper.n_trials=3",
        f"hydra.sweep.dir={tmp_path / 'second'}",
    )
    assert again.returncode == 0, again.stderr[-3000:]
    client, parents, children = sweep_runs(uri)
    assert len(parents) == 1 and len(children) == 3  # one new trial, not three
    journal = client.download_artifacts(parents[0].info.run_id, "optuna_study.jsonl", str(tmp_path))
    assert len(Path(journal).read_text().splitlines()) == 3
    best = yaml.safe_load((tmp_path / "second" / "optimization_results.yaml").read_text())
    objectives = []
    for child in children:
        epoch = int(child.data.metrics["best_epoch"])
        values = {m.step: m.value for m in client.get_metric_history(child.info.run_id, "val_auc")}
        objectives.append(values[epoch])
    assert best["best_value"] == pytest.approx(max(objectives), abs=1e-6)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dead_server_is_one_line_for_every_command(tiny_data, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    result = train(tiny_data, tmp_path, dead, "tracking.connect_timeout=2")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: tracking store " + dead), errors
    assert "did not answer within 2 s" in errors[0]
    image = next(tiny_data.glob("Test/*/*"))
    for command in (
        ["leaderboard"],
        ["promote"],
        ["runs", "list"],
        ["predict", "models:/deepfake-detector@champion", str(image)],
        ["evaluate", "models:/deepfake-detector@champion", "--data", str(tiny_data)],
    ):
        answer = detect([*command, "--tracking-uri", dead, "--connect-timeout", "1"], tmp_path)
        assert answer.returncode == 2, command
        assert answer.stderr.strip().count("\n") == 0 and dead in answer.stderr, answer.stderr


@pytest.mark.training
def test_full_disk_fails_the_run_with_one_line(tiny_data, tmp_path, tiny_tmpfs):
    """Artifacts and checkpoints on a full disk: one line naming the cause, run FAILED."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    ensure_experiment(uri, EXPERIMENT)  # creates the store (on the healthy disk)
    client = store_client(uri)
    (tiny_tmpfs / "filler").write_bytes(b"\0" * (3 * 1024 * 1024 - 64 * 1024))
    experiment = client.create_experiment("full_disk", artifact_location=tiny_tmpfs.as_uri())
    result = train(
        tiny_data,
        tmp_path,
        uri,
        "tracking.experiment=full_disk",
        f"trainer.checkpoint.dir={tiny_tmpfs / 'checkpoints'}",
    )
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "disk is full" in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    (run,) = client.search_runs([experiment])
    assert run.info.status == "FAILED"
    assert "disk is full" in run.data.tags["error"]


def test_unwritable_store_causes_are_named():
    import errno
    import sqlite3

    full = OSError(errno.ENOSPC, "No space left on device", "/mnt/x")
    assert unwritable_store_cause(full) == "the disk is full (No space left on device) at /mnt/x"
    try:
        try:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        except sqlite3.OperationalError as inner:
            raise RuntimeError("(sqlite3.OperationalError) wrapped") from inner
    except RuntimeError as outer:
        assert unwritable_store_cause(outer) == "the store is read-only"
    assert unwritable_store_cause(ValueError("bad value")) is None


def test_swept_params_come_from_hydras_override_parser():
    from deepfake_detect.training.sweep_callback import grid_params

    config = OmegaConf.create(
        {
            "hydra": {
                "sweeper": {"params": {"optimizer.lr": "0.001,0.01"}},
                "overrides": {
                    "task": ["data.classes=[Real,Fake]", "model.dropout=0.1,0.3", "seed=1"]
                },
            }
        }
    )
    assert grid_params(config) == {
        "sweep.optimizer.lr": "0.001,0.01",
        "sweep.model.dropout": "0.1,0.3",
    }


def test_resume_of_an_unknown_or_finished_run_is_refused(tiny_data, tmp_path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    experiment = ensure_experiment(uri, EXPERIMENT)
    client = store_client(uri)
    done = client.create_run(experiment, tags={RUN_TYPE_TAG: "training"})
    client.set_terminated(done.info.run_id, "FINISHED")
    for request, expected in (
        ("0" * 32, "no such run"),
        (done.info.run_id, "already FINISHED"),
        ("latest", "use a run id"),
    ):
        result = train(tiny_data, tmp_path, uri, f"trainer.resume={request}")
        assert result.returncode == 2, result.stderr[-2000:]
        assert expected in result.stderr


@pytest.mark.training
def test_ctrl_c_after_the_last_epoch_then_resume_with_allowed_changes(tiny_data, tmp_path):
    """SIGINT as fit returns: exit 130, KILLED with the last epoch's checkpoint; the resume
    trains nothing, evaluates once, records the allowed config change and keeps the
    checkpoint (trainer.checkpoint.keep)."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    args = [
        "trainer.epochs=2",
        "trainer.checkpoint.keep=true",
        *signal_once(tmp_path / "interrupted", epoch=0, signum=2, at_train_end=True),
    ]
    first = train(tiny_data, tmp_path, uri, *args)
    assert first.returncode == 130, first.stderr[-3000:]
    client, (run,) = runs(uri)
    run_id = run.info.run_id
    assert run.info.status == "KILLED" and "SIGINT" in run.data.tags["error"]
    assert run.data.tags[CHECKPOINT_EPOCH_TAG] == "1"
    assert "test_auc" not in run.data.metrics

    changed = [*args, "trainer.early_stopping.patience=5", f"trainer.resume={run_id}"]
    resumed = train(tiny_data, tmp_path, uri, *changed, "trainer.resume_allow_changes=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "error" not in run.data.tags  # the KILLED attempt's reason is gone
    assert "trainer.early_stopping.patience: None -> 5" in run.data.tags["resume_changes"]
    for key in ("val_auc", "train_loss"):
        assert steps(client, run_id, key) == [0, 1]
    for key in ("test_auc", "val_youden_threshold"):
        assert len(steps(client, run_id, key)) == 1
    assert (tmp_path / "store" / "checkpoints" / run_id).is_dir()


def test_heartbeat_thread_keeps_beating(store_uri):
    import time

    from deepfake_detect.tracking.run_state import Heartbeat
    from deepfake_detect.tracking.vocabulary import HEARTBEAT_TAG

    client = store_client(store_uri)
    run = client.create_run(ensure_experiment(store_uri, EXPERIMENT))
    beats = set()
    with Heartbeat(client, run.info.run_id, every=0.2):
        for _ in range(300):  # up to a minute on a busy machine; no timing is asserted
            beats.add(client.get_run(run.info.run_id).data.tags[HEARTBEAT_TAG])
            if len(beats) >= 3:
                break
            time.sleep(0.2)
    assert len(beats) >= 3


def test_read_only_store_is_one_line_and_still_readable(tiny_data, tmp_path, tiny_tmpfs):
    uri = f"sqlite:///{tiny_tmpfs / 'mlflow.db'}"
    code = "import sys; from deepfake_detect.tracking.store import ensure_experiment as e; "
    made = run_cli(["-c", code + f"e({uri!r}, {EXPERIMENT!r})"])  # no open file left here
    assert made.returncode == 0, made.stderr
    remounted = subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], capture_output=True)
    if remounted.returncode != 0:
        pytest.skip(f"cannot remount read-only: {remounted.stderr.decode().strip()}")
    result = train(tiny_data, tmp_path, uri)
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "read-only" in errors[0], errors
    board = detect(
        ["leaderboard", "--tracking-uri", uri, "--out", str(tmp_path / "board.csv")], tmp_path
    )
    assert board.returncode == 0, board.stderr
