"""The connections the SQL reader queries through: Python's ``sqlite3`` for ``sqlite:///`` files
(importing SQLAlchemy costs about 0.15-0.2 s of a 16,000-run export, its row objects about as
much again) and SQLAlchemy for the other databases (PostgreSQL).

Both take the same SQL: ``:name`` parameters, a list parameter expanded into ``IN (...)``
here, ``?`` markers in :meth:`Connection.insert_many`. A driver error becomes
:class:`DatabaseError` with the driver's own message.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from typing import Any, Protocol
from urllib.parse import quote

from deepfake_detect.tracking.store import sqlite_path

Params = Mapping[str, Any]
# statements every new SQLite connection runs first (the tests make them read-only with it)
SQLITE_SETUP: list[str] = []


class DatabaseError(Exception):
    """A query the database refused (the driver's message, first line)."""


_LIST_PREFIX = "_item_"  # bound names of expanded list items: _item_<name>_<i>
_QUOTED = re.compile(r"('(?:[^']|'')*')")  # a SQL string literal


def expand_lists(sql: str, params: Params) -> tuple[str, dict[str, Any]]:
    """``sql`` with each list or tuple parameter ``:name`` written as ``(:_item_name_0, ...)``
    and those items bound (an empty list as ``(NULL)``, which matches nothing). Parameter names
    are identifiers of this package's own queries (never user text) and may not start with the
    reserved prefix."""
    bound = {key: value for key, value in params.items() if not isinstance(value, list | tuple)}
    for key, items in params.items():
        if not key.isidentifier() or key.startswith(_LIST_PREFIX):
            raise ValueError(f"parameter name {key!r} is not a plain identifier")
        if isinstance(items, list | tuple):
            names = [f"{_LIST_PREFIX}{key}_{i}" for i in range(len(items))]
            bound.update(zip(names, items, strict=True))
            marks = ", ".join(f":{name}" for name in names) or "NULL"
            marker = re.compile(rf"(?<![:\w]):{re.escape(key)}(?!\w)")
            parts = _QUOTED.split(sql)  # odd parts are 'string literals': left as they are
            sql = "".join(
                part if i % 2 else marker.sub(f"({marks})", part) for i, part in enumerate(parts)
            )
    return sql, bound


class Connection(Protocol):
    """One open connection."""

    def rows(self, sql: str, params: Params | None = None) -> list[Sequence[Any]]:
        """All rows of a query."""

    def run(self, sql: str) -> None:
        """A statement without parameters or rows (DDL)."""

    def insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement with ``?`` markers, executed for every row."""

    def rollback(self) -> None:
        """Undo what this connection has not committed."""


@contextmanager
def _refused(driver_error: type[Exception] | tuple[type[Exception], ...]) -> Iterator[None]:
    """A driver's error inside the block as DatabaseError with the driver's first line
    (SQLAlchemy wraps the driver's exception in ``.orig``)."""
    try:
        yield
    except driver_error as error:
        cause = getattr(error, "orig", None) or error
        text = str(cause).strip()
        raise DatabaseError(text.splitlines()[0] if text else type(cause).__name__) from error


class _SqliteConnection:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def rows(self, sql: str, params: Params | None = None) -> list[Sequence[Any]]:
        query, bound = expand_lists(sql, params or {})
        with _refused(sqlite3.Error):
            return self._db.execute(query, bound).fetchall()

    def run(self, sql: str) -> None:
        with _refused(sqlite3.Error):
            self._db.execute(sql)

    def insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with _refused(sqlite3.Error):
            self._db.executemany(sql, rows)

    def rollback(self) -> None:
        self._db.rollback()


class _AlchemyConnection:
    def __init__(self, connection: Any) -> None:  # a sqlalchemy.Connection
        from sqlalchemy import exc, text

        self._db, self._text, self._error = connection, text, exc.DBAPIError

    def rows(self, sql: str, params: Params | None = None) -> list[Sequence[Any]]:
        query, bound = expand_lists(sql, params or {})
        with _refused(self._error):
            return self._db.execute(self._text(query), bound).all()

    def run(self, sql: str) -> None:
        with _refused(self._error):
            self._db.execute(self._text(sql))

    def insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        mark = "?" if self._db.dialect.paramstyle == "qmark" else "%s"  # psycopg2: %s
        with _refused(self._error):  # straight to the driver's executemany: a third of the
            self._db.exec_driver_sql(sql.replace("?", mark), list(rows))  # time of bound dicts

    def rollback(self) -> None:
        self._db.rollback()


class Database:
    """Opens connections to one store: ``with database.connect() as db: db.rows(...)``."""

    def __init__(self, uri: str) -> None:
        path = sqlite_path(uri)
        self._engine: Any = None
        self._open: Callable[[], sqlite3.Connection] | None = None
        if path is not None and "?" not in uri and "#" not in uri:  # a plain file: sqlite3
            address = f"file:{quote(str(path))}?mode=rw"
            self._open = lambda: sqlite3.connect(address, uri=True, check_same_thread=False)
        else:
            import sqlalchemy

            self._engine = sqlalchemy.create_engine(uri)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection of its own (one per thread), closed after the block."""
        if self._open is None:
            from sqlalchemy import exc

            with _refused(exc.DBAPIError):
                alchemy = self._engine.connect()
            with alchemy:
                yield _AlchemyConnection(alchemy)
            return
        with _refused(sqlite3.Error):
            connection = self._open()
        with closing(connection):
            with _refused(sqlite3.Error):
                for statement in SQLITE_SETUP:
                    connection.execute(statement)
            yield _SqliteConnection(connection)

    def close(self) -> None:
        """Release the pooled connections (SQLAlchemy)."""
        if self._engine is not None:
            self._engine.dispose()
