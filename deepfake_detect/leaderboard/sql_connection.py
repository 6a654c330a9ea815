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
from contextlib import contextmanager
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


class _SqliteConnection:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def rows(self, sql: str, params: Params | None = None) -> list[Sequence[Any]]:
        query, bound = expand_lists(sql, params or {})
        try:
            return self._db.execute(query, bound).fetchall()
        except sqlite3.Error as error:
            raise DatabaseError(str(error)) from error

    def run(self, sql: str) -> None:
        self.insert_many(sql, [()])

    def insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self._db.executemany(sql, rows)
        except sqlite3.Error as error:
            raise DatabaseError(str(error)) from error

    def rollback(self) -> None:
        self._db.rollback()


class _AlchemyConnection:
    def __init__(self, connection: Any) -> None:  # a sqlalchemy.Connection
        self._db = connection

    def rows(self, sql: str, params: Params | None = None) -> list[Sequence[Any]]:
        from sqlalchemy import exc, text

        query, bound = expand_lists(sql, params or {})
        try:
            return self._db.execute(text(query), bound).all()
        except exc.DBAPIError as error:
            raise DatabaseError(_first_line(error.orig)) from error

    def run(self, sql: str) -> None:
        from sqlalchemy import exc, text

        try:
            self._db.execute(text(sql))
        except exc.DBAPIError as error:
            raise DatabaseError(_first_line(error.orig)) from error

    def insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        from sqlalchemy import exc

        mark = "?" if self._db.dialect.paramstyle == "qmark" else "%s"  # psycopg2: %s
        try:  # straight to the driver's executemany: a third of the time of bound dicts
            self._db.exec_driver_sql(sql.replace("?", mark), list(rows))
        except exc.DBAPIError as error:
            raise DatabaseError(_first_line(error.orig)) from error

    def rollback(self) -> None:
        self._db.rollback()


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


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

            try:
                alchemy = self._engine.connect()
            except exc.DBAPIError as error:
                raise DatabaseError(_first_line(error.orig)) from error
            with alchemy:
                yield _AlchemyConnection(alchemy)
            return
        try:
            connection = self._open()
        except sqlite3.Error as error:
            raise DatabaseError(str(error)) from error
        try:
            for statement in SQLITE_SETUP:
                connection.execute(statement)
        except sqlite3.Error as error:
            connection.close()
            raise DatabaseError(str(error)) from error
        try:
            yield _SqliteConnection(connection)
        finally:
            connection.close()

    def close(self) -> None:
        """Release the pooled connections (SQLAlchemy)."""
        if self._engine is not None:
            self._engine.dispose()
