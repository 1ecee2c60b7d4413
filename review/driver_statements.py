"""Core statements run straight on the DBAPI cursor (`driver`), for hot writes.

Split from review/db.py (engines and sessions): what SQLAlchemy compiles once per
dialect, bound here, and executed on a connection of a session or of `write_core`.
"""

from __future__ import annotations

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
        self._compiled: dict[tuple[int, Any], tuple[str, list[tuple[str, Any, Any]]]] = {}

    def _compile(
        self, bind: Connection | Engine, statement: Any
    ) -> tuple[str, list[tuple[str, Any, Any]]]:
        key = (id(bind.dialect), statement)
        found = self._compiled.get(key)
        if found is None:
            dialect = bind.dialect
            compiled = statement.compile(dialect=dialect)
            binds = compiled.binds  # a required one takes a value; others hold theirs (`id = 1`)
            order = [
                (
                    name,
                    _bind_processor(binds[name], dialect),
                    _UNSET if binds[name].required else binds[name].value,
                )
                for name in compiled.positiontup or ()
            ]
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


_UNSET = object()


def connection_of(bind: Session | Connection) -> Connection:
    """The Core connection of a session's transaction, or the connection itself."""
    return bind.connection() if isinstance(bind, Session) else bind


@dataclass(frozen=True)
class BoundStatement:
    """A statement's SQL and its driver-ready arguments (DriverStatements.bind)."""

    sql: str
    args: tuple[Any, ...]


def _bind_processor(bind: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """The function that turns a Python value into the driver's, for one bound parameter.

    Public API only (`TypeEngine.dialect_impl` and `bind_processor`): it is the processor
    `conn.execute` applies (SQLAlchemy caches the same `dialect_impl(d).bind_processor(d)`),
    including a TypeDecorator's `process_bind_param` and a variant's dialect type.
    """
    return bind.type.dialect_impl(dialect).bind_processor(dialect)


def _args(order: list[tuple[str, Any, Any]], values: dict[str, Any]) -> tuple[Any, ...]:
    args = []
    for name, process, literal in order:
        value = values.get(name, literal)
        if value is _UNSET:
            raise KeyError(f"no value for {name!r}")
        args.append(value if process is None else process(value))
    return tuple(args)


driver = DriverStatements()
