"""The documentation: the README stays a guide, the site builds, and nothing goes undocumented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).with_name("mkdocs")
QUIET = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def documentation() -> str:
    pages = sorted((ROOT / "docs").glob("*.md"))
    return "\n".join(path.read_text() for path in [ROOT / "README.md", *pages])


def make_targets() -> list[str]:
    """Every target ``make help`` lists (a ``target: ... ## help`` line)."""
    text = (ROOT / "Makefile").read_text()
    return re.findall(r"^([a-zA-Z_-]+):.*?## ", text, re.M)


def test_readme_is_a_guide_with_links_that_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 250
    for command in ("make demo", "make test"):
        assert f"{command}" in readme
    linked = re.findall(r"\]\(((?:docs/)[^)#]+)\)", readme)
    assert linked, "the README links the docs pages"
    missing = [link for link in linked if not (ROOT / link).is_file()]
    assert not missing, f"README links to missing files: {missing}"


def test_every_make_target_and_subcommand_is_documented():
    from deepfake_detect.commands.cli import COMMANDS

    text = documentation()
    targets = make_targets()
    assert {"demo", "test", "docs", "bench", "leaderboard"} <= set(targets)
    undocumented = [t for t in targets if not re.search(rf"make {re.escape(t)}\b", text)]
    assert not undocumented, f"make targets no page mentions as `make TARGET`: {undocumented}"
    commands = list(COMMANDS)
    assert {"evaluate", "matrix", "reproduce", "import-csv"} <= set(commands)
    missing = [
        c for c in commands if not re.search(rf"deepfake-detect[^\n`]*?\b{re.escape(c)}\b", text)
    ]
    assert not missing, (
        f"subcommands no page shows as `deepfake-detect {missing[0]} ...`: {missing}"
    )


def test_the_site_builds_strictly_and_offline(tmp_path):
    """``mkdocs build --strict``: a broken internal link or a page missing from the nav fails."""
    site = tmp_path / "site"
    result = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=QUIET,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    built = {path.relative_to(site).as_posix() for path in site.rglob("index.html")}
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")} - {"index"}
    assert {f"{page}/index.html" for page in pages} <= built


def test_a_broken_link_fails_the_strict_build(tmp_path):
    """The strict build is what catches a broken link: prove it on a copy with one."""
    docs = tmp_path / "docs"
    subprocess.run(["cp", "-r", str(ROOT / "docs"), str(docs)], check=True)
    (docs / "leaderboard.md").write_text("# Leaderboard\n\nSee [the cache](no-such-page.md).\n")
    config = (ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {docs}")
    (tmp_path / "mkdocs.yml").write_text(config)
    result = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=QUIET,
        timeout=300,
    )
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr


def test_the_performance_tables_are_printed_from_bench_json():
    """One source of truth: the README's and docs/performance.md's tables are what
    bench/report.py renders from the committed docs/bench.json (make bench rewrites all three),
    and every figure there carries its spread."""
    import json

    from bench.report import END, PAGES, PUBLISHED, START, figures_table, replace_section

    def refuse(token: str) -> None:
        raise AssertionError(f"docs/bench.json has {token}: not standard JSON")

    bench = json.loads(PUBLISHED.read_text(), parse_constant=refuse)
    for figure in bench["ratios"].values():
        assert {"median", "spread", "noisy", "values"} <= set(figure)
    table = figures_table(bench)
    for page in PAGES:
        text = page.read_text()
        assert replace_section(text, table, page) == text, f"{page.name}: run make bench"
    edited = PAGES[0].read_text().replace(START, "")
    with pytest.raises(ValueError, match="bench:start"):
        replace_section(edited, table, PAGES[0])
    assert END in edited


def test_a_goal_is_met_only_within_its_bounds():
    """The pages' goal column: a median past its bound, or a spread past the issue's bound,
    is not met, whatever the other says; a median within it with a repeat outside is only
    inconclusive."""
    from bench.figures import spread_figure
    from bench.run import FIGURES

    speed = FIGURES["ours_vs_seed_loop"]
    assert speed.verdict(spread_figure([1.30, 1.31, 1.32])) == "met"
    assert speed.verdict(spread_figure([1.20, 1.21, 1.22])) == "**not met**"  # too slow
    assert speed.verdict(spread_figure([1.10, 1.48, 1.60])) == "**not met**"  # spread 34 %
    assert speed.verdict(spread_figure([1.48])) == "**not met**"  # one value: no spread
    floor = FIGURES["leaderboard_vs_sql_floor"]
    assert floor.verdict(spread_figure([1.2, 1.3, 1.4])) == "met"  # no spread bound asked
    assert floor.verdict(spread_figure([1.2, 1.7, 1.4])) == "inconclusive"  # one pair over
    assert floor.verdict(spread_figure([1.6, 1.65])) == "**not met**"
    assert FIGURES["roofline_meso4_ours"].verdict(spread_figure([0.16])) == "-"
