"""The Performance tables of the README and docs/performance.md, printed from ``bench.json``.

``python -m bench.report [results/bench.json]`` (``make bench`` runs it) copies the run's
``bench.json`` to ``docs/bench.json`` (committed: the published figures) and rewrites the text
between the ``<!-- bench:start -->`` / ``<!-- bench:end -->`` markers of both pages, so the
tables never disagree with the measurements (a test renders ``docs/bench.json`` again and
compares).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.figures import strict_json
from bench.run import FIGURES
from deepfake_detect.config.paths import PROJECT_ROOT, RESULTS_DIR

PUBLISHED = PROJECT_ROOT / "docs" / "bench.json"
PAGES = (PROJECT_ROOT / "README.md", PROJECT_ROOT / "docs" / "performance.md")
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _shown(value: float, unit: str) -> str:
    return f"{100 * value:.2f} %" if unit == "%" else f"{value:.2f}x"


def figures_table(bench: dict) -> str:
    """One row per figure: median, spread over how many values, target, whether the goal is
    met (median and, where bounded, spread), and whether the repeats agree (clean or NOISY)."""
    machine = bench["machine"]
    lines = [
        f"`make bench` profile `{bench['profile']}`, {bench['date'][:10]}, "
        f"{machine['cpu_count']} CPUs, {machine['auto_precision']}, "
        f"{len(machine['gpus'])} GPUs, {bench['elapsed_s'] / 60:.0f} min "
        "(from `docs/bench.json`):",
        "",
        "| figure | median | spread | target | goal | repeats |",
        "|---|---|---|---|---|---|",
    ]
    for key, spec in FIGURES.items():
        figure = bench["ratios"].get(key)
        if figure is None:
            continue
        values, spread = figure["values"], figure["spread"]
        shown = (
            f"{100 * spread:.0f} % over {len(values)}"
            if spread is not None
            else "one value"
            if len(values) < 2
            else f"undefined (median 0) over {len(values)}"
        )
        agree = "**NOISY**" if figure["noisy"] else "clean"
        where = f" ({figure['measured_on']})" if "measured_on" in figure else ""
        lines.append(
            f"| {spec.label}{where} | {_shown(figure['median'], spec.unit)} | {shown} "
            f"| {spec.target} | {spec.verdict(figure)} | {agree} |"
        )
    roofline = bench["cases"]["roofline"]
    peak = roofline["peak"]
    lines += [
        "",
        f"Roofline: {peak['cores']} cores x {peak['ghz']} GHz x {peak['fp32_lanes']} float32 "
        f"lanes x 2 (FMA) x 2 units = {peak['peak_gflops']:.0f} GFLOP/s.",
        "",
        "| training case | GFLOP / image | roofline img/s | measured img/s | fraction |",
        "|---|---|---|---|---|",
    ]
    for name, case in roofline["cases"].items():
        lines.append(
            f"| {name} | {case['training_gflop_per_image']:.3f} | "
            f"{case['roofline_images_per_s']:.0f} | {case['images_per_s']:.1f} | "
            f"{100 * case['roofline_fraction']:.1f} % |"
        )
    lines.append("")
    for store in bench["cases"]["leaderboard_export"]["stores"]:
        lines.append(
            f"- leaderboard {store['runs']:,} runs x {store['epochs']} epochs: "
            f"{store['export_s']:.2f} s (raw-SQL floor {store['sql_floor_s']:.2f} s), "
            f"peak RSS {store['peak_rss_mb']:.0f} MB"
        )
    return "\n".join(lines)


def replace_section(text: str, table: str, page: Path) -> str:
    """``text`` with the part between the markers replaced by ``table``."""
    if text.count(START) != 1 or text.count(END) != 1:
        raise ValueError(f"{page} needs exactly one {START} and one {END} line")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{table}\n{END}{tail}"


def publish(source: Path) -> None:
    """Copy ``source`` to docs/bench.json and print its tables into both pages."""
    bench = json.loads(source.read_text())
    PUBLISHED.write_text(strict_json(bench))  # standard JSON: no NaN tokens
    table = figures_table(bench)
    for page in PAGES:
        page.write_text(replace_section(page.read_text(), table, page))
        print(
            f"updated {page.relative_to(PROJECT_ROOT)} from {PUBLISHED.relative_to(PROJECT_ROOT)}"
        )


if __name__ == "__main__":
    publish(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS_DIR / "bench.json")
