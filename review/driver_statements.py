"""Core statements run straight on the DBAPI cursor (`driver`), for hot writes.

Split from review/db.py (engines and sessions): what SQLAlchemy compiles once per
dialect, bound here, and executed on a connection of a session or of `write_core`.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


class DriverStatements:
    """Core statements compiled once per dialect, run straight on the DBAPI cursor.

    For SQLite's hot statements (the audit chain's append, which every state change
    makes): SQLAlchemy's execute spends more Python per call than SQLite needs to run a
    small statement in-process. The SQL is SQLAlchemy's own compilation, and each value
    passes through its bound parameter's bind processor (JSON, UTC datetimes), found
    through public API (`compiled.binds`, `positiontup`, the type's `bind_processor`), so
    what is stored is exactly what `conn.execute` would store (tests/test_audit_chain.py
    writes a row both ways and compares). The statement runs on the session's
    connection, inside its transaction.
    """

    def __init__(self) -> None:
        self._compiled: dict[tuple[int, Any], tuple[str, list[Bind]]] = {}
        self._readings: dict[tuple[int, str, Any], Reading] = {}

    def _compile(self, bind: Connection | Engine, statement: Any) -> tuple[str, list[Bind]]:
        key = (id(bind.dialect), statement)
        found = self._compiled.get(key)
        if found is None:
            dialect = bind.dialect
            compiled = statement.compile(dialect=dialect)
            binds = compiled.binds  # a required one takes a value; others hold theirs (`id = 1`)
            order = [_bind(name, binds[name], dialect) for name in compiled.positiontup or ()]
            found = self._compiled[key] = (compiled.string, order)
        return found

    def execute(self, conn: Connection, statement: Any, values: dict[str, Any]) -> Any:
        return self._run(conn, statement, [values], many=False)

    def executemany(self, conn: Connection, statement: Any, rows: list[dict[str, Any]]) -> None:
        self._run(conn, statement, rows, many=True)

    def bind(self, engine: Engine, statement: Any, values: dict[str, Any]) -> BoundStatement:
        """The statement's SQL with `values` already through their bind processors (JSON
        encoding, datetimes), to run later on a connection of `engine` (`execute_bound`):
        so that work is done before a transaction takes its locks."""
        sql, order = self._compile(engine, statement)
        return BoundStatement(sql, _args(order, values))

    def execute_bound(self, conn: Connection, bound: BoundStatement) -> Any:
        cursor = conn.connection.dbapi_connection.cursor()
        dbapi = conn.dialect.loaded_dbapi
        try:
            return cursor.execute(bound.sql, bound.args)
        except dbapi.Error as error:  # as conn.execute raises it: IntegrityError and the rest
            raise DBAPIError.instance(bound.sql, bound.args, error, dbapi.Error) from error

    def _run(self, conn: Connection, statement: Any, rows: list[dict[str, Any]], many: bool):
        sql, order = self._compile(conn, statement)
        args = [_args(order, row) for row in rows]
        cursor = conn.connection.dbapi_connection.cursor()
        dbapi = conn.dialect.loaded_dbapi
        try:
            return cursor.executemany(sql, args) if many else cursor.execute(sql, args[0])
        except dbapi.Error as error:  # as conn.execute raises it: IntegrityError and the rest
            raise DBAPIError.instance(sql, args, error, dbapi.Error) from error

    def reading(self, engine: Engine, statement: Any) -> Reading:
        """A SELECT compiled once per dialect to run on the driver (`Reading`)."""
        key = (id(engine.dialect), "reading", statement)
        found = self._readings.get(key)
        if found is None:
            found = self._readings[key] = Reading(engine.dialect, statement)
        return found


class Reading:
    """A SELECT run straight on the DBAPI cursor, read as `conn.execute(...).first()` would.

    For one-row reads on the request's path (Database.first_row_unpinged): SQLAlchemy's
    execute (its connection, context, result and row) cost several times what the
    driver spends on the statement. The SQL is SQLAlchemy's own compilation; each value
    passes through its bound parameter's bind processor, and each column through its
    type's result processor (public API: `dialect_impl(...).result_processor`, given the
    driver's type code as SQLAlchemy gives it), so the row holds what `conn.execute`'s
    would (tests/test_driver_reads.py reads rows both ways and compares them). The row
    is a named tuple: by position, or by column name where the names are unique.
    """

    def __init__(self, dialect: Any, statement: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("an expanding parameter (IN) has no fixed SQL to run on the driver")
        self.sql = compiled.string
        self._dialect = dialect
        self._named = compiled.positiontup is None  # psycopg's %(name)s; SQLite's ? in order
        names = list(compiled.binds) if self._named else list(compiled.positiontup)
        binds = compiled.binds
        self._binds = [_bind(name, binds[name], dialect) for name in names]
        columns = list(statement.selected_columns)
        self._types = [column.type for column in columns]
        self._row = namedtuple(  # a row type per statement, made once
            "Row", list(statement.selected_columns.keys()), rename=True
        )
        self._processors: list[Callable[[Any], Any] | None] | None = None

    def args(self, values: dict[str, Any]) -> dict[str, Any] | tuple[Any, ...]:
        """The driver's parameters: by name (psycopg) or in order (SQLite)."""
        if self._named:
            return dict(zip([b[0] for b in self._binds], _args(self._binds, values), strict=True))
        return _args(self._binds, values)

    def first(self, cursor: Any) -> Any:
        """The cursor's first row, each column through its result processor; None when
        there is none. Closes the cursor (SQLite: its statement reset, so no read
        transaction stays open behind it)."""
        try:
            raw = cursor.fetchone()
            if raw is None:
                return None
            if self._processors is None:  # the driver's type codes, as SQLAlchemy's result uses
                self._processors = [
                    type_.dialect_impl(self._dialect).result_processor(self._dialect, d[1])
                    for type_, d in zip(self._types, cursor.description, strict=True)
                ]
            return self._row._make(
                value if process is None else process(value)
                for process, value in zip(self._processors, raw, strict=True)
            )
        finally:
            cursor.close()


_UNSET = object()


def connection_of(bind: Session | Connection) -> Connection:
    """The Core connection of a session's transaction, or the connection itself."""
    return bind.connection() if isinstance(bind, Session) else bind


@dataclass(frozen=True)
class BoundStatement:
    """A statement's SQL and its driver-ready arguments (DriverStatements.bind)."""

    sql: str
    args: tuple[Any, ...]


# One bound parameter: its name, its bind processor (None: the value as it is), the value
# it holds when none is given (_UNSET: required), and what a None becomes (_CALL: ask the
# processor each time). A new row's empty columns (a dozen, JSON and datetimes) are
# None, so their driver values are worked out once, not per row.
Bind = tuple[str, Callable[[Any], Any] | None, Any, Any]
_CALL = object()


def _bind(name: str, bind: Any, dialect: Any) -> Bind:
    process = _bind_processor(bind, dialect)
    none: Any = None
    if process is not None:
        try:
            none = process(None)
        except Exception:  # a type that refuses None refuses it at each call instead
            none = _CALL
    return (name, process, _UNSET if bind.required else bind.value, none)


def _bind_processor(bind: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """The function that turns a Python value into the driver's, for one bound parameter.

    Public API only (`TypeEngine.dialect_impl` and `bind_processor`): it is the processor
    `conn.execute` applies (SQLAlchemy caches the same `dialect_impl(d).bind_processor(d)`),
    including a TypeDecorator's `process_bind_param` and a variant's dialect type.
    """
    return bind.type.dialect_impl(dialect).bind_processor(dialect)


def _args(order: list[Bind], values: dict[str, Any]) -> tuple[Any, ...]:
    args = []
    for name, process, literal, none in order:
        value = values.get(name, literal)
        if value is None and none is not _CALL:
            args.append(none)
        elif value is _UNSET:
            raise KeyError(f"no value for {name!r}")
        else:
            args.append(value if process is None else process(value))
    return tuple(args)


driver = DriverStatements()
