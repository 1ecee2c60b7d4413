"""The baseline for bench/intake.py: parse JSON, insert one row with SQLAlchemy, answer.

Served by the same gunicorn settings as Countersign, against the same database, so the
ratio between the two is what Countersign's own work (signature, validation, policy,
diff, idempotency, audit chain) costs.
"""

from __future__ import annotations

import json
import os

from flask import Flask, jsonify, request
from sqlalchemy import JSON, Integer, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class BareRow(Base):
    __tablename__ = "bench_bare_rows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[dict] = mapped_column(JSON)


engine = create_engine(
    os.environ["DATABASE_URL"],
    connect_args=(
        {"timeout": 10, "check_same_thread": False}
        if os.environ["DATABASE_URL"].startswith("sqlite")
        else {}
    ),
)
if engine.dialect.name == "sqlite":

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):  # the durability settings Countersign uses
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=FULL")
        dbapi_connection.execute("PRAGMA busy_timeout=10000")


try:
    Base.metadata.create_all(engine)
except DBAPIError:  # two gunicorn workers raced to create it on PostgreSQL: the other won
    pass

app = Flask(__name__)


@app.post("/ingest")
def ingest():
    body = json.loads(request.get_data())
    with Session(engine) as session, session.begin():
        row = BareRow(body=body)
        session.add(row)
        session.flush()
        row_id = row.id
    return jsonify({"id": row_id}), 202


@app.get("/status")
def status():
    """The baseline for bench/status.py: a small constant JSON answer, nothing else."""
    return jsonify(
        {"agent": "bench-bot", "state": "active", "changed_at": "2026-11-21T00:00:00Z",
         "changed_by": "cli", "reason": "created"}
    )  # fmt: skip
