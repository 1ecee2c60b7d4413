"""PostgreSQL: a prepared decision written in one call of `countersign_decide` (migration 0027).

The decision is prepared as on SQLite (review/reviewing/prepared_decisions.py: read,
checked, receipt signed, event hashed up to its link, callback body built); what SQLite
does under its write lock, the function does in the server, in one autocommit
statement: the chain's shard lock and the reviewer's decision lock (the full path's
order), the conditional ending, the lease renewal on the rest of the batch, the
approval's row, the callback's row, the event appended to its shard. No round trip holds
a lock, and no BEGIN, COMMIT or pool ping travels: the call is intake's kind
(review/intake/deferrals.py `call_intake`).

A lost race writes nothing: the function answers why (`gone`, `ended`, `not_held`,
`changed`, `owes_more`), and TakeTheFullPath sends `decide` down the full path
(review/reviewing/decisions.py), which reads again and tells the reviewer what won.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from review.audit.chain import rows_json
from review.services import Services

WON = "decided"


class LostRace(Exception):
    """The call wrote nothing; `why` is the function's word for what changed."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def call_params(
    *,
    holder_id: int,
    now: datetime,
    lease_until: datetime,
    has_callback: bool,
    ending: dict[str, Any],
    approval: dict[str, Any] | None,
    callback: dict[str, Any] | None,
    events: list[dict[str, Any]],
) -> dict[str, Any]:
    """The function's parameters, JSON encoded before the call (as intake's are).

    `ending`: the deferral's id, the action, quorum, risk level and policy it was
    prepared for, and the columns its ending sets (ending.py terminal_values);
    `events`: placed (review/audit/chain.py placed_events), hashed up to their link."""
    return {
        "holder": holder_id,
        "now": now,
        "lease_until": lease_until,
        "has_callback": has_callback,
        "ending": rows_json(ending),
        "approval": rows_json(approval) if approval is not None else None,
        "outbox": rows_json(callback) if callback is not None else None,
        "events": rows_json(events),
    }


def write(svc: Services, params: dict[str, Any]) -> int:
    """Make the call; the items of the reviewer's batch left to decide. LostRace when
    the function wrote nothing; IntegrityError (nothing written either) when an approval
    by the same person got in past the preparation's checks."""
    outcome, left = call_decide(svc, params)
    if outcome != WON:
        raise LostRace(outcome)
    return left


def call_decide(svc: Services, params: dict[str, Any]) -> tuple[str, int | None]:
    """The one call, on the driver (review/db.py `call_unpinged`), on a pooled
    connection taken without the pool's ping; one the server dropped fails the call,
    which runs again on a pinged connection.

    That is safe: the call is one statement in its own transaction. A connection found
    dropped when the statement is sent ran nothing. In the rare case that the first one
    committed and its answer was lost, the second finds the deferral ended (`ended`):
    the full path then answers that it was already decided, by this reviewer, and
    nothing is written twice."""
    return svc.db.call_unpinged(PG_DECIDE, params)


PG_DECIDE = (  # psycopg's parameter style
    "SELECT outcome, items_left FROM countersign_decide(%(holder)s, %(now)s, %(lease_until)s,"
    " %(has_callback)s, CAST(%(ending)s AS jsonb), CAST(%(approval)s AS jsonb),"
    " CAST(%(outbox)s AS jsonb), CAST(%(events)s AS jsonb))"
)
