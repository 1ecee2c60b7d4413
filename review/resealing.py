"""`secrets reseal`: every sealed value re-sealed with the current SECRET_KEY.

After a key rotation the values sealed with an older key still open through
SECRET_KEY_FALLBACKS; resealing them lets the fallbacks go (docs/SECRETS.md). All of
it is one transaction with its audit event: either every value moves to the current
key or none does. A value that no key opens stops the whole run (SealError names it),
so a wrong fallback list never half-rewrites the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from review.audit.chain import record_event
from review.doors.aap.tables import AapInstance
from review.models import AgentSecret
from review.notifications.models import ServiceSecret
from review.sealing import SealError, SecretBox

# Every column that holds a value sealed by SecretBox: (its name in counts, table, column).
SEALED_COLUMNS = (
    ("agent_secrets", AgentSecret, AgentSecret.ciphertext),
    ("aap_delivery_secrets", AapInstance, AapInstance.signing_secret),
    ("aap_registration_answers", AapInstance, AapInstance.provisioned),
    ("service_secrets", ServiceSecret, ServiceSecret.ciphertext),
)


@dataclass(frozen=True)
class Resealed:
    what: str
    resealed: int  # sealed with an older key, now with the current one
    current: int  # already sealed with the current key


def reseal_all(
    session: Session, box: SecretBox, *, actor: tuple[str, str] = ("system", "cli")
) -> list[Resealed]:
    """Re-seal with the current key every value an older key sealed; one audit event."""
    counts = []
    for what, model, column in SEALED_COLUMNS:
        resealed = current = 0
        rows = session.execute(
            select(model.id, column).where(column.is_not(None), column != "").order_by(model.id)
        ).all()
        for row_id, sealed in rows:
            if box.is_current(sealed):
                current += 1
                continue
            try:
                fresh = box.reseal(sealed)
            except SealError as exc:
                raise SealError(f"{what}: row {row_id}: {exc}") from None
            # Conditional: a row changed meanwhile (a rotation) is left to the next run.
            resealed += session.execute(
                update(model).where(model.id == row_id, column == sealed).values({column: fresh})
            ).rowcount
        counts.append(Resealed(what, resealed, current))
    record_event(
        session,
        actor_kind=actor[0],
        actor_id=actor[1],
        event_type="secrets.resealed",
        payload={c.what: {"resealed": c.resealed, "current": c.current} for c in counts},
    )
    return counts
