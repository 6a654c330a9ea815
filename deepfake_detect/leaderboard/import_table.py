"""Import a hand-kept ``model_eval.csv`` (the seed's table) as FINISHED MLflow training runs.

The seed's format: one or two leading columns (an integer index, as ``df.to_csv`` of a frame
itself read from CSV writes it, then the model names), then the 18 columns ``train_loss`` ...
``val_tp`` of :data:`SEED_EPOCH_KEYS` and optionally the nine ``test_*`` ones. A row without
values (the seed's ``models`` row) is skipped. Each other row becomes one run named after the
model, its values logged at step 0 with ``best_epoch`` 0 (so both leaderboard readers report
that step), tagged ``imported=true`` with the file's sha256, path and the row's position; it
has no model, and promote never picks it.

Rows whose acc/precision/recall contradict their TP/FP/TN/FN (per split, within
:data:`table.TOLERANCE`) are repaired when a permutation of the count columns makes them agree
(else, when the counts plus the rate columns precision/recall/auc permuted together agree:
the seed's two broken rows need that), fewest moved columns first; the rest are imported as
written and tagged ``inconsistent=true``. The whole file is read and checked before any run
is created; re-importing the same bytes creates nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_detect.leaderboard.rates import disagreeing
from deepfake_detect.leaderboard.table import TOLERANCE
from deepfake_detect.tracking.vocabulary import (
    BEST_EPOCH_METRIC,
    COLUMNS_FIXED_TAG,
    COUNT_METRICS,
    EPOCH_KEYS,
    IMPORTED_FILE_TAG,
    IMPORTED_ROW_TAG,
    IMPORTED_SHA256_TAG,
    IMPORTED_TAG,
    INCONSISTENT_SPLITS_TAG,
    INCONSISTENT_TAG,
    MODEL_TAG,
    RUN_TYPE_TAG,
    SEED_EPOCH_KEYS,
    SEED_TEST_KEYS,
    SPLIT_METRICS,
    SPLITS,
    TAG_VALUE_LIMIT,
    TEST_KEYS,
    TRAINING,
)

DEFAULT_EXPERIMENT = "deepfake_detect-imported"
ENTRY_POINT = "deepfake-detect import-csv"
KNOWN_KEYS: tuple[str, ...] = (*EPOCH_KEYS, *TEST_KEYS)
COUNTS: tuple[str, ...] = ("fn", "fp", "tn", "tp")  # the seed's column order
MOVABLE_RATES: tuple[str, ...] = ("precision", "recall", "auc")  # moved only with the counts
CHECKED: tuple[str, ...] = ("acc", "precision", "recall", *COUNTS)  # needed to check a split
# cells read as blank, as pandas reads them
BLANK_CELLS = frozenset({"", "nan", "NaN", "NA", "N/A", "n/a", "null", "NULL", "None", "<NA>"})


class ImportTableError(ValueError):
    """The file cannot be imported (one line: which file, row and column, and what to do)."""


@dataclass(frozen=True)
class SplitFix:
    """The columns of one split that were read from other columns of the file."""

    split: str
    logged: tuple[str, ...]  # metric names, in SPLIT_METRICS order
    sources: tuple[str, ...]  # the file's column each of them came from
    alternatives: int  # other permutations that also agree
    tied: bool  # one of them moves as few columns as this one
    rates_moved: bool  # no permutation of the counts alone agreed

    def notation(self) -> str:
        return f"{self.split}:{','.join(self.logged)}<-{','.join(self.sources)}"

    def describe(self) -> str:
        text = f"logged {self.notation()}"
        if self.rates_moved:
            text += " (no permutation of the counts alone agrees, so rate columns moved too)"
        if self.alternatives:
            others = "permutation also agrees" if self.alternatives == 1 else "permutations agree"
            rule = (
                "ties with it on fewest moved columns; the first in column order is used"
                if self.tied
                else "moves more columns"
            )
            text += f"; {self.alternatives} other {others}, but {rule}"
        return text


@dataclass(frozen=True)
class SplitProblem:
    """A split whose rates contradict its counts under every permutation tried."""

    split: str
    details: str  # e.g. "val_acc 0.9000 != 0.5000"


@dataclass
class TableRow:
    """One data row: its place in the file, the model name and the values as written."""

    position: int  # among the data rows, 0 first (pandas' index of the table)
    line: int  # the file's line number
    name: str
    values: dict[str, float]  # metric key -> value; blank cells absent
    fixes: list[SplitFix] = field(default_factory=list)
    problems: list[SplitProblem] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"line {self.line} ({self.name})"

    def logged(self) -> dict[str, float]:
        """The values to log: as written, with the fixes' columns moved."""
        values = dict(self.values)
        for fix in self.fixes:
            for name, source in zip(fix.logged, fix.sources, strict=True):
                values[f"{fix.split}_{name}"] = self.values[f"{fix.split}_{source}"]
        return values

    def tags(self) -> dict[str, str]:
        tags = {}
        if self.fixes:
            tags[COLUMNS_FIXED_TAG] = ";".join(fix.notation() for fix in self.fixes)
        if self.problems:
            tags[INCONSISTENT_TAG] = "true"
            tags[INCONSISTENT_SPLITS_TAG] = ",".join(p.split for p in self.problems)
        return tags


@dataclass(frozen=True)
class BlankRow:
    position: int
    line: int
    name: str


@dataclass
class Table:
    """A read and checked file: every row with values, the blank ones, the file's digest."""

    path: Path
    sha256: str
    rows: list[TableRow]
    blank: list[BlankRow]


def read_table(path: Path) -> Table:
    """Read, validate and check ``path``; raises :class:`ImportTableError` on bad input."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImportTableError(
            f"no such file {path}; pass the path of the model_eval.csv to import"
        ) from None
    except IsADirectoryError:
        raise ImportTableError(f"{path} is a folder; pass the model_eval.csv file in it") from None
    except OSError as error:
        raise ImportTableError(f"cannot read {path}: {error.strerror or error}") from None
    path = path.resolve()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImportTableError(
            f"{path} is not UTF-8 text (byte {error.start}); save it as UTF-8 CSV"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        lines = [(reader.line_num, row) for row in reader]
    except csv.Error as error:
        raise ImportTableError(f"{path} line {reader.line_num}: not valid CSV ({error})") from None
    lines = [(number, [cell.strip() for cell in row]) for number, row in lines]
    lines = [(number, row) for number, row in lines if any(row)]
    if not lines:
        raise ImportTableError(f"{path} is empty; nothing was imported")
    (header_line, header), body = lines[0], lines[1:]
    leading, columns = _parse_header(path, header)
    rows: list[TableRow] = []
    blank: list[BlankRow] = []
    for position, (number, cells) in enumerate(body):
        if leading == 2 and len(cells) == len(header) - 1:
            name, raw = cells[0], cells[1:]  # appended by df.to_csv(mode="a", header=False)
        elif len(cells) != len(header):
            raise ImportTableError(
                f"{path} line {number} has {len(cells)} fields, its header (line {header_line}) "
                f"{len(header)}; fix the row's commas"
            )
        else:
            name, raw = cells[leading - 1], cells[leading:]
        values = {
            column: _number(path, number, name, column, cell)
            for column, cell in zip(columns, raw, strict=True)
            if cell not in BLANK_CELLS
        }
        if not values:
            blank.append(BlankRow(position, number, name))
            continue
        if not name:
            raise ImportTableError(
                f"{path} line {number}: values but no model name in column "
                f"{header[leading - 1] or leading}; write the model's name there"
            )
        row = TableRow(position, number, name, values)
        check_row(row)
        rows.append(row)
    if not rows:
        raise ImportTableError(f"{path} has no row with values; nothing was imported")
    return Table(path, hashlib.sha256(data).hexdigest(), rows, blank)


def _parse_header(path: Path, header: list[str]) -> tuple[int, list[str]]:
    """How many leading (index, name) columns, and the metric columns after them."""
    if "run_id" in header:
        raise ImportTableError(
            f"{path} is a `deepfake-detect leaderboard` export (it has a run_id column): its "
            "runs are in a tracking store already; import only hand-kept tables"
        )
    leading = next((i for i, name in enumerate(header) if name in KNOWN_KEYS), None)
    if leading is None:
        raise ImportTableError(
            f"{path} has none of the seed's columns ({', '.join(SEED_EPOCH_KEYS[:3])} ... "
            f"{SEED_EPOCH_KEYS[-1]}) in its first line; is it the seed's model_eval.csv?"
        )
    if leading == 0:
        raise ImportTableError(
            f"{path}: the first column is {header[0]}, a metric; the table needs the model "
            "names in its first column (or its second, after an index column)"
        )
    if leading > 2:
        raise ImportTableError(
            f"{path}: {leading} columns ({', '.join(repr(c) for c in header[:leading])}) come "
            f"before {header[leading]}; expected at most an index column and the model names"
        )
    columns = header[leading:]
    for index, name in enumerate(columns):
        if name not in KNOWN_KEYS:
            raise ImportTableError(
                f"{path}: column {index + leading + 1} ({name!r}) is not a metric this project "
                f"logs (the seed's are {SEED_EPOCH_KEYS[0]} ... {SEED_EPOCH_KEYS[-1]}, "
                f"optionally {SEED_TEST_KEYS[0]} ... {SEED_TEST_KEYS[-1]}); rename or remove it"
            )
        if name in columns[:index]:
            raise ImportTableError(f"{path}: column {name} appears twice; keep one")
    required = list(SEED_EPOCH_KEYS)
    if any(name.startswith("test_") for name in columns):
        required += SEED_TEST_KEYS
    missing = [key for key in required if key not in columns]
    if missing:
        raise ImportTableError(
            f"{path} has no column {', '.join(missing)}; the seed's table has all of "
            f"{SEED_EPOCH_KEYS[0]} ... {SEED_EPOCH_KEYS[-1]} (and all nine test_* or none): "
            "add the columns (cells may stay blank)"
        )
    return leading, columns


def _number(path: Path, line: int, name: str, column: str, cell: str) -> float:
    where = f"{path} line {line} ({name or 'no name'}), column {column}"
    try:
        value = float(cell)
    except ValueError:
        raise ImportTableError(
            f"{where}: {cell!r} is not a number; correct the cell or leave it blank"
        ) from None
    if not math.isfinite(value):
        raise ImportTableError(f"{where}: {cell!r} is not a finite number; leave it blank")
    if column.rsplit("_", 1)[-1] in COUNT_METRICS and (value < 0 or value != int(value)):
        raise ImportTableError(
            f"{where}: {cell!r} is not a count (a whole number >= 0); correct the cell"
        )
    return value


def check_row(row: TableRow) -> None:
    """Set ``row.fixes`` and ``row.problems``, split by split (splits missing a value of
    acc/precision/recall/tp/fp/tn/fn are not checked)."""
    for split in SPLITS:
        values = {name: row.values.get(f"{split}_{name}") for name in SPLIT_METRICS}
        if any(values[name] is None for name in CHECKED):
            continue
        present = {name: value for name, value in values.items() if value is not None}
        broken = disagreeing(present, TOLERANCE)
        if not broken:
            continue
        fix = find_fix(split, present)
        if fix is not None:
            row.fixes.append(fix)
        else:
            details = "; ".join(
                f"{split}_{name} {present[name]:.4f} != {want:.4f}" for name, want in broken.items()
            )
            row.problems.append(SplitProblem(split, details))


def _mappings(rates: tuple[str, ...]):
    """(moved columns, target -> source) for every permutation of the counts and, with
    ``rates``, of those rate columns together with them; the identity left out."""
    rate_orders = list(itertools.permutations(rates)) if rates else [()]
    for rate_order in rate_orders:
        for count_order in itertools.permutations(COUNTS):
            mapping = dict(zip(COUNTS, count_order, strict=True))
            mapping.update(zip(rates, rate_order, strict=True))
            moved = sum(target != source for target, source in mapping.items())
            if moved and (not rates or rate_order != rates):
                yield moved, mapping


def find_fix(split: str, values: dict[str, float]) -> SplitFix | None:
    """The permutation that makes one split's rates agree with its counts, moving the fewest
    columns (first the counts alone, then counts and precision/recall/auc), or None."""
    rates = tuple(name for name in MOVABLE_RATES if name in values)
    for stage in ((), rates):
        agreeing = []
        for moved, mapping in _mappings(stage):
            moved_values = {**values, **{t: values[s] for t, s in mapping.items()}}
            if not disagreeing(moved_values, TOLERANCE):
                agreeing.append((moved, mapping))
        if not agreeing:
            continue
        fewest = min(moved for moved, _ in agreeing)
        mapping = next(mapping for moved, mapping in agreeing if moved == fewest)
        logged = tuple(n for n in SPLIT_METRICS if n in mapping and mapping[n] != n)
        return SplitFix(
            split,
            logged,
            tuple(mapping[name] for name in logged),
            alternatives=len(agreeing) - 1,
            tied=sum(moved == fewest for moved, _ in agreeing) > 1,
            rates_moved=bool(stage),
        )
    return None


@dataclass(frozen=True)
class PreviousRun:
    run_id: str
    name: str
    experiment: str
    position: int


@dataclass
class ImportResult:
    """What an import did: the new runs (row, run id) and the rows imported before."""

    experiment: str
    created: list[tuple[TableRow, str]]
    previous: list[PreviousRun]


def previous_imports(uri: str, sha256: str) -> dict[int, PreviousRun]:
    """Row position -> the FINISHED active run an earlier import made of that row of the
    same file (found by its digest tag, in any experiment)."""
    from deepfake_detect.leaderboard.api_reader import all_experiments, search_all
    from deepfake_detect.tracking.store import sqlite_path, store_client

    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        return {}  # a new store: nothing imported yet (ensure_experiment creates it)
    client = store_client(uri)
    experiments = {e.experiment_id: e.name for e in all_experiments(client)}
    if not experiments:
        return {}
    found = {}
    for run in search_all(client, list(experiments), f"tags.{IMPORTED_SHA256_TAG} = '{sha256}'"):
        position = run.data.tags.get(IMPORTED_ROW_TAG, "")
        if run.info.status == "FINISHED" and position.isdigit():
            found.setdefault(
                int(position),
                PreviousRun(
                    run.info.run_id,
                    run.info.run_name or run.info.run_id[:8],
                    experiments[run.info.experiment_id],
                    int(position),
                ),
            )
    return found


def import_table(table: Table, uri: str, experiment: str = DEFAULT_EXPERIMENT) -> ImportResult:
    """Log each row not imported before as a FINISHED run of ``experiment``; when the store
    fails midway the runs this call made are deleted again (no partial import)."""
    from deepfake_detect.tracking.run_inputs import source_tags
    from deepfake_detect.tracking.store import ensure_experiment, store_client

    done = previous_imports(uri, table.sha256)
    new = [row for row in table.rows if row.position not in done]
    previous = sorted(done.values(), key=lambda run: run.position)
    if not new:
        return ImportResult(experiment, [], previous)
    experiment_id = ensure_experiment(uri, experiment)
    client = store_client(uri)
    common = {
        **source_tags(ENTRY_POINT),
        RUN_TYPE_TAG: TRAINING,
        IMPORTED_TAG: "true",
        IMPORTED_SHA256_TAG: table.sha256,
        IMPORTED_FILE_TAG: str(table.path)[:TAG_VALUE_LIMIT],
    }
    created: list[tuple[TableRow, str]] = []
    try:
        for row in new:
            created.append((row, _log_row(client, experiment_id, table, row, common)))
    except BaseException:
        for _, run_id in created:
            _forget(client, run_id)
        raise
    return ImportResult(experiment, created, previous)


def _log_row(client, experiment_id: str, table: Table, row: TableRow, common: dict) -> str:
    from mlflow.entities import Metric

    tags = {
        **common,
        MODEL_TAG: row.name,
        IMPORTED_ROW_TAG: str(row.position),
        **row.tags(),
        "mlflow.note.content": (
            f"Imported by `{ENTRY_POINT}` from {table.path} (row {row.position}, line "
            f"{row.line}); no model was logged."
        )[:TAG_VALUE_LIMIT],
    }
    run_id = client.create_run(experiment_id, run_name=row.name, tags=tags).info.run_id
    try:
        now = int(time.time() * 1000)
        values = {**row.logged(), BEST_EPOCH_METRIC: 0.0}
        metrics = [Metric(key, value, now, 0) for key, value in values.items()]
        client.log_batch(run_id, metrics=metrics)
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        _forget(client, run_id)
        raise
    return run_id


def _forget(client, run_id: str) -> None:
    """Delete a run of a failed import (best effort: the store may be what failed)."""
    try:
        client.delete_run(run_id)
    except Exception:
        pass
