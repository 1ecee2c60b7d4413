"""PostgreSQL: a decision held for its undo window written in one call of `countersign_hold`
(migration 0028).

The hold is prepared as on SQLite (review/reviewing/prepared_holds.py: the deferral read
and checked, the time in view assessed); what SQLite does under its write lock, the
function does in the server, in one autocommit statement: the chain's shard lock and the
reviewer's decision lock (the full path's order), the held row copied from the deferral
only while it is as prepared, the lease renewal on the reviewer's batch. No round trip
holds a lock, and no BEGIN, COMMIT or pool ping travels: the call is
review/reviewing/decision_call.py's kind.

A lost race writes nothing: the function answers why (`held_already`, `changed`), and
prepared_holds.HeldElsewhere sends `decide` down the full path
(review/reviewing/decisions.py), which reads again and tells the reviewer what won.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from review.audit.hashing import shard_key, shard_of
from review.audit.shards import shard_count
from review.reviewing.decision_call import LostRace
from review.services import Services

WON = "held"


def call_params(
    svc: Services,
    *,
    holder_id: int,
    deferral_id: str,
    claimed_at: datetime,
    now: datetime,
    lease_until: datetime,
    username: str,
    verdict: str,
    reason: str | None,
    seen_ms: int | None,
    effective_at: datetime,
) -> dict[str, Any]:
    """The function's parameters; the shard is the one the deferral's events go to (the
    full path's chained_write locks it)."""
    return {
        "holder": holder_id,
        "shard": shard_of(shard_key(deferral_id, None), shard_count(svc.db.engine)),
        "deferral": deferral_id,
        "claimed_at": claimed_at,
        "now": now,
        "lease_until": lease_until,
        "username": username,
        "verdict": verdict,
        "reason": reason,
        "seen_ms": seen_ms,
        "effective_at": effective_at,
    }


def write(svc: Services, params: dict[str, Any]) -> int:
    """Make the call; the items of the reviewer's batch left to decide. LostRace when the
    function wrote nothing."""
    outcome, left = call_hold(svc, params)
    if outcome != WON:
        raise LostRace(outcome)
    return left


def call_hold(svc: Services, params: dict[str, Any]) -> tuple[str, int | None]:
    """The one call, on the driver (review/db.py `call_unpinged`), on a pooled connection
    taken without the pool's ping; one the server dropped fails the call, which runs
    again on a pinged connection.

    That is safe: the call is one statement in its own transaction. In the rare case that
    the first one committed and its answer was lost, the second finds the row held
    already (`held_already`): the full path then answers that it is decided already,
    and nothing is written twice."""
    return svc.db.call_unpinged(PG_HOLD, params)


PG_HOLD = (  # psycopg's parameter style
    "SELECT outcome, items_left FROM countersign_hold(%(holder)s, %(shard)s, %(deferral)s,"
    " %(claimed_at)s, %(now)s, %(lease_until)s, %(username)s, %(verdict)s, %(reason)s,"
    " %(seen_ms)s, %(effective_at)s)"
)
