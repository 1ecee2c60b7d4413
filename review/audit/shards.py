"""How many chains the audit log spreads over, as the database records it (epochs).

The count is recorded in `audit_epochs` (migration 0025 records the first, from
COUNTERSIGN_AUDIT_SHARDS); writers read it once per process and database, so a
change (`audit shards N`, `record_epoch`) reaches a running process at its restart.
Until then it keeps writing to the shards it knew: every shard's head row stays, and
every checkpoint commits to every head, so a stale count never breaks the chain; it
only spreads the events of a deferral that straddles the change over two shards.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.orm import Session

from review.audit.hashing import GENESIS_HASH
from review.models import AuditEpoch, AuditEvent, AuditHead, utcnow

_counts: dict[str, int] = {}


def shard_count(bind: Connection | Engine) -> int:
    """The newest epoch's shard count (read once per process and database)."""
    url = bind.engine.url.render_as_string(hide_password=True)
    count = _counts.get(url)
    if count is None:
        if isinstance(bind, Engine):
            with bind.connect() as conn:
                count = _recorded(conn)
        else:
            count = _recorded(bind)
        _counts[url] = count
    return count


def _recorded(conn: Connection) -> int:
    epochs = AuditEpoch.__table__
    newest = conn.execute(select(epochs.c.shards).order_by(epochs.c.epoch.desc()).limit(1))
    return newest.scalar() or 1


def forget_counts() -> None:
    """Read the count again at the next write (after record_epoch, and in tests)."""
    _counts.clear()


def record_epoch(session: Session, shards: int) -> AuditEpoch | None:
    """From the next event on, spread new events over `shards` chains; None if they
    already are. Takes every shard's lock first (review/audit/chain.py lock_chain), so
    no event is appended while the epoch begins; head rows are added, never removed."""
    from review.audit.chain import lock_chain  # noqa: PLC0415  (chain imports this module)

    if not 1 <= shards <= 256:
        raise ValueError("the shard count must be from 1 to 256")
    lock_chain(session)
    conn = session.connection()
    newest = session.scalar(select(AuditEpoch).order_by(AuditEpoch.epoch.desc()).limit(1))
    if newest is not None and newest.shards == shards:
        return None
    heads = AuditHead.__table__
    existing = set(conn.execute(select(heads.c.shard)).scalars())
    missing = [s for s in range(shards) if s not in existing]
    if missing:
        conn.execute(insert(heads), [{"shard": s, "seq": 0, "hash": GENESIS_HASH} for s in missing])
    last_seq = conn.execute(select(func.max(AuditEvent.__table__.c.seq))).scalar() or 0
    epoch = AuditEpoch(
        epoch=0 if newest is None else newest.epoch + 1,
        shards=shards,
        first_seq=last_seq + 1,
        at=utcnow(),
    )
    session.add(epoch)
    session.flush()
    forget_counts()
    return epoch


def epochs(session: Session) -> list[AuditEpoch]:
    return list(session.scalars(select(AuditEpoch).order_by(AuditEpoch.epoch)))
