"""The tables, in SQLAlchemy 2.0 style. Migrations in migrations/ create them.

One module per concern; every public name is re-exported here, so `from review.models
import X` is the way in. Importing this package puts all of these tables in
`Base.metadata` (migrations/env.py and Alembic's autogenerate read it).
"""

from review.models.agents import Agent, AgentOwner, AgentSecret
from review.models.audit import AuditCheckpoint, AuditEpoch, AuditEvent, AuditHead
from review.models.base import Base, JSONType, UTCDateTime, utcnow
from review.models.canaries import Canary
from review.models.deferrals import (
    PENDING_STATUSES,
    TERMINAL_STATUSES,
    Approval,
    Deferral,
    Execution,
    PendingDecision,
    undecided_fields,
)
from review.models.outbox import DeliveryAttempt, OutboxEvent
from review.models.people import ROLES, User, new_session_token

__all__ = [
    "PENDING_STATUSES",
    "ROLES",
    "TERMINAL_STATUSES",
    "Agent",
    "AgentOwner",
    "AgentSecret",
    "Approval",
    "AuditCheckpoint",
    "AuditEpoch",
    "AuditEvent",
    "AuditHead",
    "Base",
    "Canary",
    "Deferral",
    "DeliveryAttempt",
    "Execution",
    "JSONType",
    "OutboxEvent",
    "PendingDecision",
    "UTCDateTime",
    "User",
    "new_session_token",
    "undecided_fields",
    "utcnow",
]
