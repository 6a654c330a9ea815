"""The team stack of ``make cluster-up AUTH=1``, for real: PostgreSQL, an MLflow tracking server
with basic auth serving artifacts, and a one-node SLURM cluster. A 2x2 sweep runs as SLURM jobs
(one requeued mid-training), then the leaderboard, promote, predict and evaluate run against it
with and without credentials. The cluster is the test's own (free ports, its own PostgreSQL
cluster and state folder), so a cluster the user started is left alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from deepfake_detect.config.paths import PROJECT_ROOT
from deepfake_detect.tracking.vocabulary import EPOCH_KEYS, SLURM_JOB_TAG, SLURM_RESTARTS_TAG
from tests.conftest import TINY_SIZE, clean_env, detect, free_port, run_cli
from tests.leaderboard_fixtures import add_many_runs

pytestmark = [pytest.mark.slow, pytest.mark.training]
COMMANDS = ("pg_ctlcluster", "slurmctld", "slurmd", "sbatch", "munged")
EXPERIMENT = "cluster"
SWEEP_OVERRIDES = [
    "hydra/launcher=slurm",
    "tracking=server",
    f"tracking.experiment={EXPERIMENT}",
    "model.dropout=0.1,0.3",
    "optimizer.lr=0.001,0.003",
    "hydra.launcher.cpus_per_task=1",  # two jobs at a time on two cores
    "hydra.launcher.gpus_per_node=null",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=15",
]


def cannot_run_cluster() -> str | None:
    """Why this machine cannot start the cluster, or None."""
    if os.geteuid() != 0:
        return "make cluster-up needs root (it starts PostgreSQL and SLURM daemons)"
    missing = [command for command in COMMANDS if not shutil.which(command)]
    if missing and not shutil.which("apt-get"):
        return f"{', '.join(missing)} missing and no apt-get to install them"
    return None


@dataclass
class Cluster:
    folder: Path
    settings: dict[str, str]  # make variables: CLUSTER_DIR, PORT, PG_PORT...
    env: dict[str, str]  # what .cluster/env exports
    munge_was_running: bool

    @property
    def state(self) -> Path:
        return Path(self.settings["CLUSTER_DIR"])

    @property
    def url(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    @property
    def password(self) -> str:
        return self.env["MLFLOW_TRACKING_PASSWORD"]

    def without_credentials(self) -> dict[str, str]:
        return {k: v for k, v in self.env.items() if not k.startswith("MLFLOW_TRACKING_USER")}

    def slurm(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args), env={**os.environ, **self.env}, capture_output=True, text=True, timeout=60
        )


def make(target: str, settings: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    variables = [f"{key}={value}" for key, value in settings.items()]
    return subprocess.run(
        ["make", "--no-print-directory", target, *variables, *extra],
        cwd=PROJECT_ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )


def read_env(path: Path) -> dict[str, str]:
    """``export KEY=VALUE`` lines -> {KEY: VALUE}."""
    pairs = (line.removeprefix("export ").partition("=") for line in path.read_text().splitlines())
    return {key: value for key, _, value in pairs if value and not key.startswith("#")}


def munge_running() -> bool:
    return subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0


def server_processes(cluster: Cluster) -> list[str]:
    """The MLflow server's process group: the server and its workers."""
    leader = (cluster.state / "mlflow.pid").read_text().strip()
    group = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[2] == leader:  # field 5, the process group
            group.append(stat.parent.name)
    assert leader in group
    return group


def drop_stale_test_clusters() -> None:
    """PostgreSQL clusters an earlier, killed test session left (they start at boot)."""
    listed = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True)
    for line in listed.stdout.splitlines():
        version, name = line.split()[:2]
        owner = name.removeprefix("dfd_test_")
        if name.startswith("dfd_test_") and owner.isdigit() and not Path(f"/proc/{owner}").exists():
            subprocess.run(["pg_dropcluster", "--stop", version, name], capture_output=True)


def pid_alive(pid_file: Path) -> bool:
    return pid_file.exists() and Path(f"/proc/{pid_file.read_text().strip()}").exists()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Cluster:
    reason = cannot_run_cluster()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("cluster")
    settings = {
        "CLUSTER_DIR": str(folder / "state"),
        "ARTIFACTS": str(folder / "artifacts"),
        "PORT": str(free_port()),
        "PG_PORT": str(free_port()),
        "PG_CLUSTER": f"dfd_test_{os.getpid()}",
        "SLURM_CLUSTER": "dfd_test",
        "SLURMCTLD_PORT": str(free_port()),
        "SLURMD_PORT": str(free_port()),
    }
    drop_stale_test_clusters()
    munge_was_running = munge_running()
    up = make("cluster-up", settings, "AUTH=1")
    try:
        if up.returncode != 0 and "could not install" in up.stderr:
            pytest.skip(up.stderr.strip().splitlines()[-1])
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        env = read_env(Path(settings["CLUSTER_DIR"]) / "env")
        yield Cluster(folder, settings, env, munge_was_running)
    finally:
        down = make("cluster-down", settings, "PURGE=1")
        assert down.returncode == 0, down.stderr[-3000:]


def test_cluster_up_is_idempotent_and_the_password_is_only_in_env(cluster):
    again = make("cluster-up", cluster.settings, "AUTH=1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "started" not in again.stdout, again.stdout  # everything was already running
    env_file = cluster.state / "env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert cluster.env["DFD_DATABASE_URI"].startswith("postgresql://")
    assert len(cluster.password) >= 16
    for path in cluster.state.rglob("*"):
        if path.is_file() and path != env_file and path.suffix != ".db":
            assert cluster.password.encode() not in path.read_bytes(), path
    database_password = cluster.env["DFD_DATABASE_URI"].split(":")[2].split("@")[0]
    for pid in server_processes(cluster):  # `ps` shows no password to other users
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert cluster.password.encode() not in command
        assert database_password.encode() not in command
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{cluster.url}/api/2.0/mlflow/experiments/search?max_results=1")
    assert refused.value.code == 401


@dataclass
class Sweep:
    requeued_job: str
    runs: list  # mlflow Run objects of the experiment, read from PostgreSQL
    output: str
    work: Path  # its working directory, Hydra's logs and the cache


@pytest.fixture(scope="module")
def sweep(cluster, tiny_data, tmp_path_factory) -> Sweep:
    """The 2x2 sweep on SLURM through the server; job 0 is requeued during its second epoch."""
    work = tmp_path_factory.mktemp("sweep")
    marker = work / "pause"
    overrides = SWEEP_OVERRIDES + [
        f"data.root={tiny_data}",
        f"data.image_size={TINY_SIZE}",
        f"data.cache_dir={work / 'cache'}",
        f"paths.log_dir={work / 'logs'}",
        "trainer.epochs=2",
        "trainer.batch_size=8",
        "trainer.verbose=0",
        "+trainer.callbacks.pause._target_=tests.helpers.PauseOnce",
        "+trainer.callbacks.pause.epoch=1",
        f"+trainer.callbacks.pause.marker={marker}",
    ]
    log = (work / "sweep.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "deepfake_detect.train", "-m", *overrides],
        cwd=work,
        env=clean_env(cluster.env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        job = wait_for_pause(process, marker, log)
        requeued = cluster.slurm("scontrol", "requeue", job)
        assert requeued.returncode == 0, requeued.stderr
        marker.write_text("go")  # the job now acts on SLURM's SIGTERM: its run is KILLED
        for _ in range(120):
            if cluster.slurm("squeue", "-h", "-j", job, "-o", "%T").stdout.strip() == "PENDING":
                break
            time.sleep(0.5)
        # a requeued job waits two minutes (the credential lifetime) before it may start again
        cluster.slurm("scontrol", "update", f"JobId={job}", "StartTime=now")
        process.wait(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
        log.seek(0)
        output = log.read()
        log.close()
    assert process.returncode == 0, output[-5000:]
    from deepfake_detect.tracking.store import store_client

    database = store_client(cluster.env["DFD_DATABASE_URI"])
    experiment = database.get_experiment_by_name(EXPERIMENT)
    runs = database.search_runs([experiment.experiment_id], max_results=100)
    return Sweep(job, runs, output, work)


def wait_for_pause(process: subprocess.Popen, marker: Path, log) -> str:
    """The SLURM job id PauseOnce wrote once job 0 is in its second epoch."""
    for _ in range(2400):
        if marker.exists() and marker.read_text().startswith("waiting"):
            return marker.read_text().split()[1]
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"the sweep ended before job 0 paused: {log.read()[-5000:]}")
        time.sleep(0.1)
    pytest.fail("job 0 did not reach its second epoch in 4 min")


def test_sweep_ran_as_slurm_jobs_into_postgres(cluster, sweep):
    parents = [run for run in sweep.runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in sweep.runs if "mlflow.parentRunId" in run.data.tags]
    assert len(parents) == 1 and len(children) == 4, [r.info.run_name for r in sweep.runs]
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {parents[0].info.run_id}
    assert {run.info.status for run in sweep.runs} == {"FINISHED"}
    from deepfake_detect.tracking.store import store_client

    database = store_client(cluster.env["DFD_DATABASE_URI"])
    for run in children:
        for key in EPOCH_KEYS:
            steps = [m.step for m in database.get_metric_history(run.info.run_id, key)]
            assert sorted(set(steps)) == [0, 1], (run.info.run_name, key, steps)
        job = run.data.tags[SLURM_JOB_TAG]
        shown = cluster.slurm("scontrol", "show", "job", job)
        assert shown.returncode == 0 and "JobState=COMPLETED" in shown.stdout, shown
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
        stored = Path(cluster.settings["ARTIFACTS"]) / run.info.experiment_id / run.info.run_id
        assert any(path.is_file() for path in stored.rglob("*")), stored
    assert len({run.data.tags[SLURM_JOB_TAG] for run in children}) == 4
    models = Path(cluster.settings["ARTIFACTS"]) / children[0].info.experiment_id / "models"
    assert len(list(models.glob("*/artifacts/MLmodel"))) == 4  # each child's model, served


def test_a_requeued_job_resumes_its_own_run(sweep):
    requeued = [r for r in sweep.runs if r.data.tags.get(SLURM_JOB_TAG) == sweep.requeued_job]
    assert len(requeued) == 1  # the same run continued, no second run for the job
    tags = requeued[0].data.tags
    assert tags[SLURM_RESTARTS_TAG] == "1" and tags.get("resume_count") == "1", tags
    others = [r for r in sweep.runs if r is not requeued[0] and SLURM_JOB_TAG in r.data.tags]
    assert all(r.data.tags[SLURM_RESTARTS_TAG] == "0" for r in others)


def test_leaderboard_via_server_and_postgres_agree(cluster, sweep, tmp_path):
    """The sweep, and 1,100+ runs with random histories (NaN, re-logged steps, deleted runs):
    the server reader pages through them (authenticated) and equals the SQL reader on the
    PostgreSQL database."""
    runs = add_many_runs(cluster.env["DFD_DATABASE_URI"], "many", 60, 1050)
    for experiment, rows in ((EXPERIMENT, 4), ("many", runs)):
        files = {}
        for name, uri in (("server", cluster.url), ("postgres", cluster.env["DFD_DATABASE_URI"])):
            files[name] = tmp_path / f"{experiment}-{name}.csv"
            out = ["--out", str(files[name]), "--experiment", experiment, "--include-failed"]
            result = detect(
                ["leaderboard", "--tracking-uri", uri, *out, "--no-chart"], tmp_path, cluster.env
            )
            assert result.returncode == 0, result.stderr[-3000:]
        assert files["server"].read_text() == files["postgres"].read_text()
        assert len(files["server"].read_text().splitlines()) == 1 + rows


def test_promote_predict_evaluate_through_the_server(cluster, sweep, tiny_data, tmp_path):
    """Run from another working directory: the model comes through the server's artifacts."""
    promoted = detect(["promote", "--experiment", EXPERIMENT], tmp_path, cluster.env)
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    model = "models:/deepfake-detector@champion"
    scores = tmp_path / "scores.csv"
    predicted = detect(
        ["predict", model, str(tiny_data / "Test"), "--out", str(scores)], tmp_path, cluster.env
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert len(scores.read_text().splitlines()) == 1 + 16
    evaluated = detect(
        ["evaluate", model, "--data", str(tiny_data), "--split", "Test", "--cache-dir", "none"],
        tmp_path,
        cluster.env,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    for output in (promoted, predicted, evaluated):
        assert cluster.password not in output.stdout + output.stderr


def test_without_credentials_every_command_is_one_line(cluster, sweep, tiny_data, tmp_path):
    anonymous = cluster.without_credentials()
    model = "models:/deepfake-detector@champion"
    detect_cli = ["-m", "deepfake_detect.commands.cli"]
    train = ["tracking=server", f"data.root={tiny_data}", f"paths.log_dir={tmp_path / 'logs'}"]
    commands = {
        "train": ["-m", "deepfake_detect.train", *train],
        "sweep": ["-m", "deepfake_detect.train", "-m", *SWEEP_OVERRIDES, *train],
        "leaderboard": detect_cli + ["leaderboard", "--out", str(tmp_path / "x.csv")],
        "promote": detect_cli + ["promote", "--experiment", EXPERIMENT, "--dry-run"],
        "predict": detect_cli + ["predict", model, str(tiny_data / "Test")],
        "evaluate": detect_cli
        + ["evaluate", model, "--data", str(tiny_data), "--cache-dir", "none"],
    }
    for name, args in commands.items():
        refused = run_cli(args, cwd=tmp_path, env=anonymous)
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 2, (name, refused.stderr[-3000:])
        assert len(lines) == 1 and "MLFLOW_TRACKING_USERNAME" in lines[0], (name, lines)


def test_a_password_in_the_uri_of_a_slurm_sweep_is_refused(tmp_path):
    """submitit pickles each job's overrides beside the sweep's logs: one line, no job."""
    result = run_cli(
        ["-m", "deepfake_detect.train", "-m", *SWEEP_OVERRIDES]
        + ["tracking.uri=http://alice:s3cret@127.0.0.1:1", f"paths.log_dir={tmp_path / 'logs'}"],
        cwd=tmp_path,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert "MLFLOW_TRACKING_PASSWORD" in lines[0] and "s3cret" not in result.stdout + lines[0]
    assert not list(tmp_path.rglob("*.pkl"))


def test_credentials_are_never_recorded(cluster, sweep):
    """Not in the runs, their artifacts, Hydra's and SLURM's logs or the sweep's output; only
    in .cluster/env and in SLURM's own record of each job's environment (root only)."""
    secret = cluster.password
    assert secret not in sweep.output
    for run in sweep.runs:
        assert secret not in repr(run.data.params) + repr(run.data.tags)
    slurm_state = cluster.state / "slurm" / "state"
    assert slurm_state.stat().st_mode & 0o777 == 0o700
    for folder in (cluster.folder, sweep.work):
        for path in folder.rglob("*"):
            if path == cluster.state / "env" or path.suffix == ".db" or slurm_state in path.parents:
                continue
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_cluster_down_stops_exactly_what_it_started(cluster):
    """Last in the module: the server comes back without auth, then with auth again (a new
    admin password that works), then everything stops; a munge that ran before the cluster
    keeps running."""
    search = f"{cluster.url}/api/2.0/mlflow/experiments/search?max_results=1"
    plain = make("cluster-up", cluster.settings)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "MLFLOW_TRACKING_PASSWORD" not in (cluster.state / "env").read_text()
    with urllib.request.urlopen(search):
        pass  # no credentials needed any more
    secured = make("cluster-up", cluster.settings, "AUTH=1")
    assert secured.returncode == 0, secured.stderr[-3000:]
    password = read_env(cluster.state / "env")["MLFLOW_TRACKING_PASSWORD"]
    assert password != cluster.password
    leaderboard = [
        "leaderboard",
        "--experiment",
        EXPERIMENT,
        "--out",
        str(cluster.folder / "x.csv"),
    ]
    with_new = detect(
        leaderboard, cluster.folder, {**cluster.env, "MLFLOW_TRACKING_PASSWORD": password}
    )
    assert with_new.returncode == 0, with_new.stderr[-3000:]
    with_old = detect(leaderboard, cluster.folder, cluster.env)
    assert with_old.returncode == 2 and "MLFLOW_TRACKING_PASSWORD" in with_old.stderr
    pid_files = [cluster.state / "mlflow.pid"] + list((cluster.state / "slurm").glob("*.pid"))
    assert len(pid_files) == 3 and all(pid_alive(path) for path in pid_files)
    pids = [path.read_text().strip() for path in pid_files]
    down = make("cluster-down", cluster.settings)
    assert down.returncode == 0, down.stderr[-3000:]
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    clusters = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True)
    line = [row for row in clusters.stdout.splitlines() if cluster.settings["PG_CLUSTER"] in row]
    assert len(line) == 1 and " down " in line[0], clusters.stdout  # stopped, data kept
    assert munge_running() == cluster.munge_was_running
