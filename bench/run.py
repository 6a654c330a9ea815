"""`make bench`: all speed cases in one run -> a table and results/bench.json.

The four input paths (seed_loop, ours, ceiling, meso4 on ours) take turns one training step at
a time, in blocks, so each block's ratio is measured under one machine load (whole-fit
alternation left ours/seed_loop spread 20-40 % on this shared VM): training compute, their
input pipelines refilling in the background. Then seed_loop, ours, ceiling and tracked are
fitted in alternation, each repeat starting with the next case, each reporting its median step
of the epochs after the first: the input paths end to end. Each ratio is the median of
per-block or per-repeat ratios with its spread, flagged NOISY over 10 %.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.figures import FigureSpec, Goal, paired_ratio, ratio_line, spread_figure, strict_json
from deepfake_detect.config.paths import PROJECT_ROOT, RESULTS_DIR

PROFILES = {
    # image px, train images per class, epochs and repeats of the fitted cases, blocks and
    # turns per block of the interleaved steps, leaderboard stores (runs, epochs), epochs per
    # sweep trial
    "full": {
        "size": 256,
        "per_class": 512,
        "epochs": 6,
        "repeats": 5,
        "blocks": 5,
        "block_steps": 30,
        "lb_stores": [(1000, 10), (4000, 10), (16000, 10), (1000, 40)],
        "cache_counts": (1000, 4000),
        # the demo grid with and without sweep.pruning: (image px, extra overrides) or None
        "pruning_grid": (128, ()),
        "sweep_epochs": 6,
        "sweep_trials": (1, 4),
        # precise BatchNorm's share of a longer epoch: image px, steps per epoch, repeats
        "precise_bn_epoch": (64, 128, 5),
    },
    "quick": {
        "size": 256,
        "per_class": 128,
        "epochs": 3,
        "repeats": 5,
        "blocks": 5,
        "block_steps": 24,
        "lb_stores": [(1000, 10), (16000, 10)],  # the scale for the floor ratio
        "cache_counts": (500, 2000),
        "pruning_grid": None,
        "sweep_epochs": 4,
        "sweep_trials": (1, 4),
        "precise_bn_epoch": (64, 128, 3),
    },
    "tiny": {
        "size": 32,
        "per_class": 64,
        "epochs": 2,
        "repeats": 1,
        "blocks": 1,
        "block_steps": 3,
        "lb_stores": [(20, 10), (20, 20)],
        "cache_counts": (40, 160),
        # a smoke test: no cache-warming run before the grid, one 3-trial multirun
        "pruning_grid": (32, ("trainer.epochs=2", "optimizer.lr=0.001,0.003", "model.dropout=0.0")),
        "grid_warm_run": False,
        "sweep_epochs": 2,
        "sweep_trials": (3,),
        "precise_bn_epoch": (32, 8, 1),
    },
}


def bench_data(size: int, per_class: int) -> Path:
    """Synthetic data for the benchmark, generated once under data/ and reused."""
    from deepfake_detect.data.synthetic import generate_dataset

    root = PROJECT_ROOT / "data" / f"bench_{size}px_{per_class}"
    if not (root / ".complete").is_file():
        generate_dataset(
            root,
            size,
            {
                "Train": per_class,
                "Validation": max(per_class // 4, 4),
                "Test": max(per_class // 4, 4),
            },
            seed=0,
        )
        (root / ".complete").touch()
    return root


def demo_data(size: int) -> Path:
    """The demo dataset (``make data``: 600/200/200 images per class) at ``size`` px."""
    from deepfake_detect.data.synthetic import generate_dataset

    root = PROJECT_ROOT / "data" / f"bench_demo_{size}px"
    if not (root / ".complete").is_file():
        generate_dataset(root, size, {"Train": 600, "Validation": 200, "Test": 200}, seed=0)
        (root / ".complete").touch()
    return root


def machine_facts(policy: str) -> dict[str, object]:
    import tensorflow as tf

    from deepfake_detect.training.hardware import BF16_CPU_FLAGS, read_cpu_flags

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_bf16_flags": sorted(read_cpu_flags() & BF16_CPU_FLAGS),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "tensorflow": tf.__version__,
        "auto_precision": policy,
    }


def training_cases(profile: dict, work: Path) -> tuple[dict, dict]:
    """The four input paths interleaved one step at a time (``blocks`` x ``block_steps`` steps
    per case), then seed_loop, ours, ceiling and tracked fitted in alternation ``repeats``
    times (each repeat starting with the next case); return cases and ratios."""
    from bench import cases
    from bench.cases import Throughput
    from deepfake_detect.training.hardware import detect_accelerators, select_precision

    policy = select_precision("auto", detect_accelerators())
    spec = cases.FitSpec(
        bench_data(profile["size"], profile["per_class"]),
        profile["size"],
        64,
        profile["epochs"],
        work / "cache",
    )
    steps = cases.interleaved_steps(spec, policy, profile["blocks"], profile["block_steps"])
    runs: dict[str, list[Throughput]] = {
        name: [] for name in ("seed_loop_fit", "ours_fit", "ceiling_fit", "tracked")
    }
    shares: dict[str, list[float]] = {}

    def tracked(repeat: int) -> Throughput:
        speed, share = cases.tracked(spec, policy, work / f"tracked{repeat}.db", PRECISE_BN_BATCHES)
        for key, value in share.items():
            shares.setdefault(key, []).append(value)
        return speed

    fits = [
        ("seed_loop_fit", lambda _: cases.seed_loop(spec)),
        ("ours_fit", lambda _: cases.ours(spec, policy)),
        ("ceiling_fit", lambda _: cases.ceiling(spec, policy)),
        ("tracked", tracked),
    ]
    for repeat in range(profile["repeats"]):
        turn = repeat % len(fits)  # each repeat starts with the next case: no fixed order bias
        for name, fit in fits[turn:] + fits[:turn]:
            runs[name].append(fit(repeat))
    fitted = {name: [t.images_per_s for t in values] for name, values in runs.items()}
    ratios = {
        # training compute, one machine load per block (the goal's figure)
        "ours_vs_seed_loop": paired_ratio(steps["ours"], steps["seed_loop"]),
        # end to end, input paths included
        "ours_vs_seed_loop_fitted": paired_ratio(fitted["ours_fit"], fitted["seed_loop_fit"]),
        "pipeline_efficiency": paired_ratio(fitted["ours_fit"], fitted["ceiling_fit"]),
        "tracked_vs_ours": paired_ratio(fitted["tracked"], fitted["ours_fit"]),
        # seconds inside each trainer callback / fit seconds (the loop waits for them):
        # tracking_overhead (MLflow logger), exact_val_metrics_overhead (exact val metrics from
        # the epoch's one predict pass), precise_batchnorm_short_epoch (16 forward batches
        # asked: the whole split where it has fewer)
        **{key: spread_figure(values) for key, values in shares.items()},
    }
    # precise BatchNorm in epochs nearer a real one's length (the tracked case's are the
    # bench's Train split: 4 steps in the quick profile)
    bn_size, bn_steps, bn_repeats = profile["precise_bn_epoch"]
    bn_spec = replace(spec, image_size=bn_size, epochs=2)
    bn_runs = [
        cases.precise_batchnorm_epoch(bn_spec, policy, bn_steps, PRECISE_BN_BATCHES)
        for _ in range(bn_repeats)
    ]
    ratios["precise_batchnorm_overhead"] = {
        "measured_on": f"{bn_runs[0][1]}-step epochs, {bn_size} px",
        **spread_figure([share for share, _ in bn_runs]),
    }
    table: dict[str, dict] = {  # interleaved: per-block step medians
        name: {"images_per_s": statistics.median(values), "blocks": values}
        for name, values in steps.items()
    }
    for name, values in runs.items():  # fitted: step medians and whole epochs, per repeat
        table[name] = {
            "images_per_s": statistics.median(fitted[name]),
            "epoch_images_per_s": statistics.median(t.epoch_images_per_s for t in values),
            "repeats": fitted[name],
        }
    for name in table:
        table[name]["precision"] = "float32" if name.startswith("seed_loop") else policy
    table["precise_batchnorm_epoch"] = {
        "image_size": bn_size,
        "epoch_steps": bn_runs[0][1],
        "epochs": bn_spec.epochs,
    }
    table["roofline"] = roofline_figures(spec, table)
    return table, {"ratios": ratios, "machine": machine_facts(policy)}


def roofline_figures(spec, table: dict) -> dict:
    """Each interleaved case (training compute) as a fraction of the CPU's float32 peak
    (bench/roofline.py says how), per block."""
    from bench import roofline
    from deepfake_detect.models.cnn import build_cnn_baseline
    from deepfake_detect.models.mesonet import build_meso4
    from deepfake_detect.training.hardware import read_cpu_flags

    peak = roofline.cpu_peak(read_cpu_flags())
    models = {"cnn_baseline": build_cnn_baseline(spec.image_size, dropout=0.3)}
    models["meso4"] = build_meso4(spec.image_size, dropout=0.3)
    cases = {
        "cnn_baseline/seed_loop": "seed_loop",
        "cnn_baseline/ours": "ours",
        "cnn_baseline/ceiling": "ceiling",
        "meso4/ours": "meso4",
    }
    figures = {
        name: {
            **roofline.roofline(models[name.split("/")[0]], table[case]["images_per_s"], peak),
            "blocks_images_per_s": table[case]["blocks"],
        }
        for name, case in cases.items()
    }
    return {"peak": peak, "cases": figures}


def print_roofline(roofline: dict) -> None:
    peak = roofline["peak"]
    print(
        f"\nroofline: {peak['cores']} cores x {peak['ghz']} GHz x {peak['fp32_lanes']} float32 "
        f"lanes x 2 (FMA) x 2 units = {peak['peak_gflops']:.0f} GFLOP/s"
    )
    for name, case in roofline["cases"].items():
        print(
            f"  {name:<22}{case['training_gflop_per_image']:.3f} GFLOP/img  bound "
            f"{case['roofline_images_per_s']:.0f} img/s  measured {case['images_per_s']:.1f} "
            f"img/s  = {case['roofline_fraction']:.1%} of the roofline"
        )


def print_table(result: dict) -> None:
    print(f"\n{'case':<22}{'figure':>16}  detail")
    for name, case in result["cases"].items():
        if name in ("leaderboard_export", "cache_build", "roofline"):
            continue
        if "images_per_s" in case:
            print(f"{name:<22}{case['images_per_s']:>12.1f} img/s  {case.get('precision', '')}")
        else:
            detail = ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in case.items()
            )
            print(f"{name:<22}{'':>16}  {detail}")
    board = result["cases"]["leaderboard_export"]
    print()
    for store in board["stores"]:
        print(
            f"leaderboard {store['runs']} runs x {store['epochs']} epochs "
            f"({store['metric_rows'] / 1e6:.2f} M metric rows): {store['export_s']:.2f} s "
            f"(raw-SQL floor {store['sql_floor_s']:.2f} s), peak RSS {store['peak_rss_mb']:.0f} MB"
        )
    for key in ("time_ratio_runs", "time_ratio_epochs"):
        if key in board:
            print("  " + ratio_line(f"{board[key]['grows']} -> time", board[key], "growth"))
    grid = result["cases"].get("demo_grid_pruning")
    if grid:
        full, pruned = grid["full"], grid["pruned"]
        print(
            f"demo grid: {full['wall_s']:.0f} s without pruning, {pruned['wall_s']:.0f} s with "
            f"sweep.pruning=median ({pruned['pruned']}/{pruned['trials']} trials pruned): "
            f"{grid['speedup']:.2f}x   "
            + ("(goal >= 1.8x)" if grid.get("warm_cache", True) else "(smoke test, not a figure)")
        )
        print(
            f"  best grid point {full['best_grid_point']} val_auc {full['best_val_auc']:.4f} / "
            f"{pruned['best_grid_point']} val_auc {pruned['best_val_auc']:.4f}"
            f"{'' if grid['same_best_grid_point'] else '  (DIFFERENT best point)'}"
        )
        share = 100 * pruned["pruning_share_of_fit"]
        print(f"  pruning decisions: {share:.3f}% of fit time   (goal < 1%)")
    cache = result["cases"].get("cache_build")
    if cache:
        small, large = cache["images"]
        print(
            f"cache build (256 px): {cache['images_per_s'][0]:.0f} / "
            f"{cache['images_per_s'][1]:.0f} img/s for {small} / {large} images; peak RssAnon "
            f"{cache['peak_anon_mb'][0]:.0f} / {cache['peak_anon_mb'][1]:.0f} MB: grows "
            f"{cache['anon_growth_mb']:.0f} MB   (goal < {cache['goal_growth_mb']:.0f} MB)"
            + ("  OVER GOAL" if cache["anon_growth_mb"] >= cache["goal_growth_mb"] else "")
        )
    print()
    for key, spec in FIGURES.items():
        if key in result["ratios"]:
            figure = result["ratios"][key]
            print(ratio_line(spec.label, figure, spec.target, spec.unit))
            if spec.goal:
                print(f"    goal: {spec.verdict(figure).strip('*')}")


REAL_EPOCH_STEPS = 2188  # the real Train split (140,002 images) at batch 64

PRECISE_BN_BATCHES = 16  # trainer.precise_batchnorm_batches' default


# every figure of ``ratios`` in bench.json: how it is printed and the goal it is held to
FIGURES: dict[str, FigureSpec] = {
    "ours_vs_seed_loop": FigureSpec(
        "ours / seed_loop, steps",
        "target >= 1.25x, spread <= 10 %",
        "x",
        Goal(1.25, None, 0.10),
    ),
    "ours_vs_seed_loop_fitted": FigureSpec(
        "ours / seed_loop, fitted", "end to end, input paths included", "x"
    ),
    "pipeline_efficiency": FigureSpec("ours / ceiling, fitted", "target >= 0.95", "x", Goal(0.95)),
    "tracked_vs_ours": FigureSpec("tracked / ours", "expected <= 1.00", "x", Goal(None, 1.0)),
    "tracking_overhead": FigureSpec(
        "tracking overhead", "target <= 1 % of fit time", "%", Goal(None, 0.01)
    ),
    "exact_val_metrics_overhead": FigureSpec(
        "exact val metrics", "target <= 2 % of fit time", "%", Goal(None, 0.02)
    ),
    "precise_batchnorm_overhead": FigureSpec(
        "precise BatchNorm", "target < 5 % of fit time", "%", Goal(None, 0.05)
    ),
    "precise_batchnorm_short_epoch": FigureSpec(
        "precise BN, tracked epochs", "16 asked; a split of fewer batches runs all", "%"
    ),
    "precise_batchnorm_batch_vs_step": FigureSpec(
        "precise BN batch / step", "one batch against one training step", "x"
    ),
    "precise_batchnorm_real_epoch": FigureSpec(
        "precise BN, real epoch", "computed: 16 batches / 2,188 steps", "%"
    ),
    "roofline_cnn_baseline_ours": FigureSpec("cnn_baseline ours/roof", "of the float32 peak", "%"),
    "roofline_cnn_baseline_seed_loop": FigureSpec(
        "cnn_baseline seed/roof", "of the float32 peak", "%"
    ),
    "roofline_cnn_baseline_ceiling": FigureSpec(
        "cnn_baseline ceil/roof", "of the float32 peak", "%"
    ),
    "roofline_meso4_ours": FigureSpec("meso4 ours/roofline", "of the float32 peak", "%"),
    "leaderboard_vs_sql_floor": FigureSpec(
        "leaderboard / SQL floor", "target <= 1.5x at 16,000 runs", "x", Goal(None, 1.5)
    ),
    "per_trial_overhead": FigureSpec("sweep per-trial overhead", "beyond a trial's own fit", "%"),
    "grid_pruning_speedup": FigureSpec("grid pruning speed-up", "goal >= 1.8x", "x", Goal(1.8)),
}


def collect_ratios(result: dict) -> None:
    """Gather the figures the other cases measured into ``ratios``, each with its spread."""
    cases, ratios = result["cases"], result["ratios"]
    per_batch = ratios["precise_batchnorm_batch_vs_step"]["values"]
    ratios["precise_batchnorm_real_epoch"] = spread_figure(
        [PRECISE_BN_BATCHES * ratio / REAL_EPOCH_STEPS for ratio in per_batch]
    )
    roofline = cases["roofline"]
    for name, figure in roofline["cases"].items():
        key = "roofline_" + name.replace("/", "_")
        blocks = figure["blocks_images_per_s"]
        ratios[key] = spread_figure([r / figure["roofline_images_per_s"] for r in blocks])
    stores = cases["leaderboard_export"]["stores"]
    largest = max(stores, key=lambda store: (store["epochs"] == 10, store["runs"]))
    ratios["leaderboard_vs_sql_floor"] = {
        "measured_on": f"{largest['runs']:,} runs x {largest['epochs']} epochs",
        **largest["vs_sql_floor"],
    }
    ratios["per_trial_overhead"] = cases["sweep_overhead"]["per_trial_overhead"]
    grid = cases.get("demo_grid_pruning")
    if grid:
        ratios["grid_pruning_speedup"] = paired_ratio(
            [grid["full"]["wall_s"]], [grid["pruned"]["wall_s"]]
        )


def main(argv: list[str] | None = None) -> int:
    from bench import tooling_cases

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller data, fewer epochs (about 13 minutes here)"
    )
    parser.add_argument("--tiny", action="store_true", help="smoke test size (seconds)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "bench.json")
    args = parser.parse_args(argv)
    from deepfake_detect.config.native_logs import import_tensorflow

    import_tensorflow()  # quiet, as the trainer: no absl/CUDA start-up banners
    name = "tiny" if args.tiny else "quick" if args.quick else "full"
    profile = PROFILES[name]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        data = bench_data(profile["size"], profile["per_class"])
        tools = {"training_memory": tooling_cases.training_peak_rss(work, data, profile["size"])}
        table, extra = training_cases(profile, work)
        tools["leaderboard_export"] = tooling_cases.leaderboard_scaling(work, profile["lb_stores"])
        tools["cache_build"] = tooling_cases.cache_build(work, profile["cache_counts"])
        tools["cli_startup"] = tooling_cases.cli_startup()
        if profile["pruning_grid"]:
            grid_size, grid_overrides = profile["pruning_grid"]
            tools["demo_grid_pruning"] = tooling_cases.demo_grid_pruning(
                work,
                demo_data(grid_size),
                grid_size,
                *grid_overrides,
                warm=profile.get("grid_warm_run", True),
            )
        tools["sweep_overhead"] = tooling_cases.sweep_overhead(
            work, data, min(profile["size"], 128), profile["sweep_epochs"], profile["sweep_trials"]
        )
    result = {
        "profile": name,
        "cases": {**table, **tools},
        **extra,
        "elapsed_s": time.perf_counter() - started,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    collect_ratios(result)
    print_table(result)
    print_roofline(result["cases"]["roofline"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(strict_json(result))
    print(f"\nwrote {args.out} ({result['elapsed_s']:.0f} s, profile {name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
