"""Helpers for the tests of writes prepared before their lock or server call
(review/reviewing/prepared_*.py, decision_call.py, hold_call.py, effect_call.py): what
changed in between, what each call answered, a server that dropped its connections, and
whether the audit chain still verifies afterwards."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

from sqlalchemy import create_engine, text, update
from sqlalchemy.pool import NullPool

from review.audit.verify import verify_chain
from review.models import Deferral, utcnow
from review.reviewing.claims import claim_batch
from review.reviewing.decisions import decide
from tests.helpers import refund


def run_once_prepared(monkeypatch, module: ModuleType, change: Callable[[], Any]) -> None:
    """Run `change()` once `module.prepare` has prepared the next write, before that write
    takes its lock or makes its call: the race the prepared write must lose cleanly."""
    prepare, pending = module.prepare, [change]

    def prepared_then(*args, **kwargs):
        prepared = prepare(*args, **kwargs)
        if pending:
            pending.pop()()
        return prepared

    monkeypatch.setattr(module, "prepare", prepared_then)


def record_calls(
    monkeypatch, module: ModuleType, name: str, keep: Callable[[Any], Any] = lambda a: a
) -> list[Any]:
    """What each call of `module.name` answered (`keep` of it), in order."""
    answered: list[Any] = []
    call = getattr(module, name)

    def recorded(*args, **kwargs):
        answer = call(*args, **kwargs)
        answered.append(keep(answer))
        return answer

    monkeypatch.setattr(module, name, recorded)
    return answered


def set_deferral(svc, d_id: str, **values: Any) -> None:
    """Change the deferral's row behind the domain's back (what another process did)."""
    with svc.db.write() as session:
        session.execute(update(Deferral).where(Deferral.id == d_id).values(**values))


def chain_holds(svc) -> bool:
    with svc.db.read() as session:
        return verify_chain(session).ok


def drop_every_connection(url: str) -> None:
    """PostgreSQL drops every connection to the database but the one asking: a restart
    or a failover, as the pool finds out on its next use of each."""
    outside = create_engine(url, poolclass=NullPool)
    with outside.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        conn.commit()
    outside.dispose()


def held_decisions(world, rita, verdict: str = "approve", n: int = 1) -> tuple[list[str], datetime]:
    """`n` deferrals rita claims and decides at the moment returned, each held for its
    undo window (`world` made with undo on)."""
    ids = [world.agent.defer(refund(summary=f"Refund {i}")).get_json()["id"] for i in range(n)]
    clicked = utcnow()
    claim_batch(world.svc, rita, now=clicked - timedelta(seconds=10))
    for d_id in ids:
        reason = None if verdict == "approve" else "not now"
        decide(world.svc, rita, d_id, verdict, reason, now=clicked, seen_ms=4200)
    return ids, clicked


def deferral_status(svc, d_id: str) -> str:
    with svc.db.read() as session:
        return session.get(Deferral, d_id).status
