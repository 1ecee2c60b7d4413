"""PostgreSQL: a held decision taking effect, written in one call of
`countersign_take_effect` (migration 0029).

The decision is prepared as on SQLite (review/reviewing/prepared_effects.py: the held
row, its reviewer and the deferral read and checked, then prepared_decisions.built: the
receipt signed, the event hashed up to its link, the callback built as of now); what
SQLite does under its write lock, the function does in the server, in one autocommit
statement: the chain's shard lock, the deferral's row locked and checked as prepared,
the held row deleted as read, the ending on the claim, the approval's row, the
callback's row, the event appended. No round trip holds a lock: the call is
review/reviewing/decision_call.py's kind, with the same parameters besides the held
row's verdict and decision time.

A lost race writes nothing: the function answers why (`gone`, `ended`, `not_held`,
`changed`, `owes_more`, `taken`), and TakeTheFullPath sends `take_effect` down the full
path (review/reviewing/taking_effect.py), which reads again and drops or decides it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from review.reviewing.decision_call import LostRace
from review.services import Services

WON = "decided"


def call_params(decision: dict[str, Any], verdict: str, decided_at: datetime) -> dict[str, Any]:
    """The function's parameters: the decision's (decision_call.call_params, whose lease
    it does not renew) and the held row's verdict and decision time, to delete it only
    as it was read."""
    taking = {k: v for k, v in decision.items() if k != "lease_until"}
    return {**taking, "verdict": verdict, "decided_at": decided_at}


def write(svc: Services, params: dict[str, Any]) -> None:
    """Make the call. LostRace when the function wrote nothing; IntegrityError (nothing
    written either) when an approval by the same person got in past the checks."""
    outcome = call_take_effect(svc, params)
    if outcome != WON:
        raise LostRace(outcome)


def call_take_effect(svc: Services, params: dict[str, Any]) -> str:
    """The one call, on the driver (review/db.py `call_unpinged`), without the pool's
    ping; one the server dropped fails the call, which runs again on a pinged connection.

    That is safe: the call is one statement in its own transaction. In the rare case that
    the first one committed and its answer was lost, the second finds the deferral ended
    (`ended`): the full path then finds no held row due, and nothing is written twice."""
    return svc.db.call_unpinged(PG_TAKE_EFFECT, params)[0]


PG_TAKE_EFFECT = (  # psycopg's parameter style
    "SELECT countersign_take_effect(%(holder)s, %(now)s, %(verdict)s, %(decided_at)s,"
    " %(has_callback)s, CAST(%(ending)s AS jsonb), CAST(%(approval)s AS jsonb),"
    " CAST(%(outbox)s AS jsonb), CAST(%(events)s AS jsonb))"
)
