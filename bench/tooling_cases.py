"""Non-training cases: leaderboard export at scale, CLI start-up, sweep overhead, peak RSS."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.figures import paired_ratio, spread_figure
from deepfake_detect.config.paths import PROJECT_ROOT

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def split_values(rng) -> dict[str, float]:
    """One split's nine metrics, the rates consistent with random counts."""
    tp, fp, tn, fn = (rng.randint(1, 500) for _ in range(4))
    return {
        "loss": rng.random(),
        "acc": (tp + tn) / (tp + fp + tn + fn),
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "auc": rng.random(),
        "fn": fn,
        "fp": fp,
        "tn": tn,
        "tp": tp,
    }


def fill_store(uri: str, runs: int, epochs: int) -> None:
    """``runs`` finished runs x ``epochs`` epochs x 18 metrics and the test metrics at a random
    epoch; every other run also logs ``best_epoch`` (as the trainer does), the rest have it
    picked from their val_auc history in the database, as for older runs.

    One template run goes through MlflowClient (so the schema is MLflow's own); the rest are
    bulk-copied in SQL, which takes seconds instead of a minute of client calls.
    """
    import random
    import sqlite3
    import uuid

    from mlflow.entities import Param

    from deepfake_detect.tracking.store import sqlite_path, store_client
    from deepfake_detect.tracking.vocabulary import BEST_EPOCH_METRIC, RUN_TYPE_TAG, TRAINING

    client = store_client(uri)
    experiment_id = client.create_experiment("bench-leaderboard")
    template = client.create_run(
        experiment_id, run_name="template", tags={RUN_TYPE_TAG: TRAINING}
    ).info.run_id
    client.log_batch(template, params=[Param("model.dropout", "0.3")])
    client.set_terminated(template, "FINISHED")
    client.delete_run(template)
    rng = random.Random(0)
    with sqlite3.connect(sqlite_path(uri)) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
        for index in range(runs):
            run_id = uuid.uuid4().hex
            values = {"run_uuid": run_id, "name": f"run{index % 50}", "lifecycle_stage": "active"}
            select = ", ".join("?" if c in values else c for c in columns)
            db.execute(
                f"INSERT INTO runs ({', '.join(columns)}) SELECT {select} FROM runs "
                "WHERE run_uuid = ?",
                [values[c] for c in columns if c in values] + [template],
            )
            db.execute(
                "INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                (RUN_TYPE_TAG, TRAINING, run_id),
            )
            db.executemany(
                "INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                [("model.dropout", str(index % 5 / 10), run_id), ("optimizer.lr", "0.001", run_id)],
            )
            best = rng.randrange(epochs)
            rows = [
                (f"{split}_{name}", value, 0, run_id, step, False)
                for step in range(epochs)
                for split in ("train", "val")
                for name, value in split_values(rng).items()
            ]
            rows += [
                (f"test_{name}", value, 0, run_id, best, False)
                for name, value in split_values(rng).items()
            ]
            if index % 2:  # every other run predates best_epoch: picked by the window query
                rows.append((BEST_EPOCH_METRIC, best, 0, run_id, 0, False))
            db.executemany(
                "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )


# runs a module as ``python -m`` would, then writes its own peak RSS (VmHWM, kB) to the file
# named first: the rusage of a child forked from this (large) process would count the pages it
# had before exec
_RUN_AND_REPORT_HWM = (
    "import runpy, sys\n"
    "report, sys.argv = sys.argv[1], sys.argv[2:]\n"
    "try:\n"
    "    runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    "finally:\n"
    "    status = open('/proc/self/status').read()\n"
    "    open(report, 'w').write(status.split('VmHWM:')[1].split()[0])\n"
)


def timed_child(module: str, *args: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB, the child's own VmHWM) of ``python -m module args``."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "vmhwm"
        command = [sys.executable, "-c", _RUN_AND_REPORT_HWM, str(report), module, *args]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=ENV)
        seconds = time.perf_counter() - start
        if done.returncode:
            raise subprocess.CalledProcessError(done.returncode, command, stderr=done.stderr)
        return seconds, float(report.read_text()) / 1024


def leaderboard_export(folder: Path, runs: int, epochs: int) -> dict[str, object]:
    """Median seconds and peak RSS of ``deepfake-detect leaderboard --no-chart`` over a store of
    ``runs`` x ``epochs`` (a cold subprocess, as a user runs it), and its ratio to the raw-SQL
    floor (``bench/leaderboard_floor.py``: the same rows with ``sqlite3`` alone): 3 pairs, each
    export right before its floor run, so both see the same machine."""
    db = folder / f"leaderboard-{runs}x{epochs}.db"
    uri = f"sqlite:///{db}"
    start = time.perf_counter()
    fill_store(uri, runs, epochs)
    filled = time.perf_counter() - start
    arguments = [
        "leaderboard",
        "--tracking-uri",
        uri,
        "--out",
        str(folder / "lb.csv"),
        "--no-chart",
    ]
    measured, floor = [], []
    for _ in range(3):
        measured.append(timed_child("deepfake_detect.commands.cli", *arguments))
        floor.append(timed_child("bench.leaderboard_floor", str(db), str(folder / "floor.csv"))[0])
    db.unlink()
    seconds = [t for t, _ in measured]
    return {
        "runs": runs,
        "epochs": epochs,
        "metric_rows": runs * (epochs * 18 + 10),
        "export_s": statistics.median(seconds),
        "export_repeats_s": seconds,
        "peak_rss_mb": max(rss for _, rss in measured),
        "sql_floor_s": statistics.median(floor),
        "vs_sql_floor": paired_ratio(seconds, floor),
        "fill_s": filled,
    }


def leaderboard_scaling(folder: Path, stores: list[tuple[int, int]]) -> dict[str, object]:
    """``leaderboard_export`` for each (runs, epochs) store, and how time grows with each."""
    cases = [leaderboard_export(folder, runs, epochs) for runs, epochs in stores]
    result: dict[str, object] = {"stores": cases}
    by_shape = {(c["runs"], c["epochs"]): c["export_repeats_s"] for c in cases}
    runs_grid = sorted(runs for runs, epochs in by_shape if epochs == 10)
    if len(runs_grid) > 1:
        low, high = runs_grid[0], runs_grid[-1]
        result["time_ratio_runs"] = {
            "grows": f"{high // low}x runs",
            **paired_ratio(by_shape[high, 10], by_shape[low, 10]),
        }
    epochs_grid = sorted(e for r, e in by_shape if r == runs_grid[0]) if runs_grid else []
    if len(epochs_grid) > 1:
        few, many = epochs_grid[0], epochs_grid[-1]
        result["time_ratio_epochs"] = {
            "grows": f"{many // few}x epochs",
            **paired_ratio(by_shape[runs_grid[0], many], by_shape[runs_grid[0], few]),
        }
    return result


def cli_startup() -> dict[str, float]:
    """Median wall time of ``deepfake-detect leaderboard --help``."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "deepfake_detect.commands.cli", "leaderboard", "--help"],
            check=True,
            capture_output=True,
            env=ENV,
        )
        times.append(time.perf_counter() - start)
    return {"leaderboard_help_s": statistics.median(times)}


def train_command(
    data_root: Path,
    size: int,
    uri: str,
    cache: Path,
    epochs: int,
    *extra: str,
    multirun: bool = False,
) -> list[str]:
    """``python -m deepfake_detect.train`` with benchmark overrides (``-m`` for a sweep)."""
    return [
        sys.executable,
        "-m",
        "deepfake_detect.train",
        *(["-m"] if multirun else []),
        f"data.root={data_root}",
        f"data.image_size={size}",
        f"tracking.uri={uri}",
        f"data.cache_dir={cache}",
        f"trainer.epochs={epochs}",
        "trainer.verbose=0",
        "tracking.log_model=false",
        *extra,
    ]


WALL_KEYS = {1: "one", 4: "four"}  # the names earlier bench.json files use


def sweep_overhead(
    folder: Path, data_root: Path, size: int, epochs: int, trial_counts: tuple[int, ...] = (1, 4)
) -> dict[str, float]:
    """What a trial of a multirun costs beyond its own fit time (the last of ``trial_counts``,
    at least 3 trials).

    Per later trial: the time from its run's start to the next trial's start (Hydra job set-up,
    data loading, model build, fit, evaluation, plots, logging) against its ``fit_seconds``.
    Each multirun's wall time is reported (``1_trial_wall_s``, ``4_trial_wall_s``).
    """
    from deepfake_detect.tracking.store import store_client

    if trial_counts[-1] < 3:
        raise ValueError("sweep_overhead needs a last multirun of at least 3 trials")
    walls, children = {}, []
    for trials in trial_counts:
        uri = f"sqlite:///{folder / f'sweep{trials}.db'}"
        dropouts = ",".join(str(round(0.1 * (i + 1), 2)) for i in range(trials))
        start = time.perf_counter()
        subprocess.run(
            train_command(
                data_root,
                size,
                uri,
                folder / f"cache{trials}",
                epochs,
                f"model.dropout={dropouts}",
                f"hydra.sweep.dir={folder / f'sweep{trials}'}",
                multirun=True,
            ),
            check=True,
            capture_output=True,
            env=ENV,
            cwd=PROJECT_ROOT,
        )
        walls[trials] = time.perf_counter() - start
        client = store_client(uri)
        children = client.search_runs(
            [client.get_experiment_by_name("deepfake_detect").experiment_id],
            "tags.run_type = 'training'",
            order_by=["attributes.start_time ASC"],
        )
    starts = [run.info.start_time / 1000 for run in children]
    later = range(1, len(children) - 1)  # trial 0 builds the cache; the last has no successor
    cycles = [starts[i + 1] - starts[i] for i in later]
    fits = [children[i].data.metrics["fit_seconds"] for i in later]
    cycle, fit = statistics.mean(cycles), statistics.mean(fits)
    return {
        **{f"{WALL_KEYS.get(trials, trials)}_trial_wall_s": wall for trials, wall in walls.items()},
        "later_trial_cycle_s": cycle,
        "later_trial_fit_s": fit,
        # per later trial: its cycle over its own fit, minus 1
        "per_trial_overhead": spread_figure([c / f - 1 for c, f in zip(cycles, fits, strict=True)]),
        "first_trial_data_load_s": children[0].data.metrics["data_load_seconds"],
        "later_trial_data_load_s": statistics.mean(
            run.data.metrics["data_load_seconds"] for run in children[1:]
        ),
    }


def training_peak_rss(folder: Path, data_root: Path, size: int) -> dict[str, float]:
    """Peak RSS (GB) of one training run on the benchmark data, as a child process."""
    uri = f"sqlite:///{folder / 'rss.db'}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(
        train_command(data_root, size, uri, folder / "rss-cache", 1),
        check=True,
        capture_output=True,
        env=ENV,
        cwd=PROJECT_ROOT,
    )
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"peak_rss_gb": max(peak_kb, before) / 1024**2}


def demo_grid_pruning(
    folder: Path, data_root: Path, size: int, *extra: str, warm: bool = True
) -> dict[str, object]:
    """The demo grid (``make sweep``: hparams_search=grid_dropout_lr, which prunes) with
    ``sweep.pruning=null`` and ``=median``, side by side (after one run that builds the decoded
    cache, unless ``warm`` is false): wall time, trials pruned, best grid point and its val
    AUC, pruning's share."""
    from deepfake_detect.leaderboard.reader import collect
    from deepfake_detect.tracking.store import store_client

    if warm:  # both arms then read the same decoded cache: neither pays for building it
        command = train_command(
            data_root, size, f"sqlite:///{folder / 'warm.db'}", folder / "grid-cache", 1
        )
        subprocess.run(command, check=True, capture_output=True, env=ENV, cwd=PROJECT_ROOT)
    result: dict[str, object] = {}
    for name, pruning in (("full", ["sweep.pruning=null"]), ("pruned", ["sweep.pruning=median"])):
        uri = f"sqlite:///{folder / f'grid-{name}.db'}"
        command = [
            sys.executable,
            "-m",
            "deepfake_detect.train",
            "-m",
            "hparams_search=grid_dropout_lr",
            f"data.root={data_root}",
            f"data.image_size={size}",
            f"data.cache_dir={folder / 'grid-cache'}",
            f"tracking.uri={uri}",
            "trainer.verbose=0",
            f"hydra.sweep.dir={folder / f'grid-{name}'}",
            *pruning,
            *extra,
        ]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=PROJECT_ROOT)
        wall = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(f"demo grid ({name}) failed:\n{done.stderr[-3000:]}")
        table = collect(uri, [], None, True, "val_auc", "best").table
        best = table.iloc[0]
        client = store_client(uri)
        children = client.search_runs(
            [client.get_experiment_by_name("deepfake_detect").experiment_id],
            "tags.run_type = 'training'",
        )
        metrics = [child.data.metrics for child in children]
        result[name] = {
            "wall_s": wall,
            "trials": len(table),
            "finished": sum(child.info.status == "FINISHED" for child in children),
            # seconds spent deciding to prune / fit seconds, over all trials (goal < 1 %)
            "pruning_share_of_fit": sum(m.get("pruning_seconds", 0.0) for m in metrics)
            / max(sum(m.get("fit_seconds", 0.0) for m in metrics), 1e-9),
            "pruned": int(table["pruned"].sum()),
            "best_grid_point": f"dropout={best['model.dropout']} lr={best['optimizer.lr']}",
            "best_val_auc": float(best["val_auc"]),
        }
    full, pruned = result["full"], result["pruned"]
    result["warm_cache"] = warm
    result["speedup"] = full["wall_s"] / pruned["wall_s"]
    result["same_best_grid_point"] = full["best_grid_point"] == pruned["best_grid_point"]
    result["best_val_auc_difference"] = pruned["best_val_auc"] - full["best_val_auc"]
    return result


def cache_data(count: int, size: int = 256) -> Path:
    """A synthetic Train split of ``count`` images at ``size`` px, made once under data/."""
    from deepfake_detect.data.synthetic import generate_dataset

    root = PROJECT_ROOT / "data" / f"bench_cache_{size}px_{count}"
    if not (root / ".complete").is_file():
        generate_dataset(root, size, {"Train": count // 2}, seed=0)
        (root / ".complete").touch()
    return root


def subset(root: Path, folder: Path, count: int) -> Path:
    """The first ``count // 2`` images of each class of ``root``'s Train, as symlinks."""
    for label_dir in sorted((root / "Train").iterdir()):
        target = folder / "Train" / label_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted(label_dir.iterdir())[: count // 2]:
            (target / image.name).symlink_to(image)
    return folder


def cache_build(folder: Path, counts: tuple[int, int]) -> dict[str, object]:
    """Build throughput and peak anonymous memory of a 256 px cache entry for two split sizes
    (each in a fresh process, via bench.cache_build); the memory must not grow with N."""
    import json

    small, large = counts
    full = cache_data(large)
    results = {}
    for count in counts:
        root = full if count == large else subset(full, folder / f"subset{count}", count)
        done = subprocess.run(
            [sys.executable, "-m", "bench.cache_build", str(root), str(folder / "cache"), "256"],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=PROJECT_ROOT,
            check=True,
        )
        results[count] = json.loads(done.stdout.strip().splitlines()[-1])
    growth = {n: r["peak_anon_mb"] - r["base_anon_mb"] for n, r in results.items()}
    return {
        "images": list(counts),
        "images_per_s": [results[n]["images_per_s"] for n in counts],
        "peak_anon_mb": [results[n]["peak_anon_mb"] for n in counts],
        "anon_growth_mb": growth[large] - growth[small],
        "goal_growth_mb": 150.0,
    }
