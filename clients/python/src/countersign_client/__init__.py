"""Countersign's client for agents: defer an action, wait for a person, run only what was
approved, report what happened (PROTOCOL.md section 9).

    from countersign_client import Countersign

    cs = Countersign("https://countersign.example.com", agent="billing-bot", secret="whsec_...")

    @cs.requires_approval(tool="billing.refund", summary="Refund {amount} on {invoice}",
                          on_behalf_of="alice@example.com")
    def refund(invoice: str, amount: int) -> dict: ...

`verify_receipt` checks an approval receipt offline (PROTOCOL.md section 13; it needs
`pip install countersign-client[receipts]`). Given `jwks=`, gates run only on an
approval whose receipt verifies.
"""

from countersign_client.approval import ensure_runnable
from countersign_client.async_client import AsyncCountersign
from countersign_client.callbacks import InvalidCallback, SeenIds, WebhookIdStore, verify_callback
from countersign_client.canonical import action_digest, canonical_json
from countersign_client.client import Countersign
from countersign_client.core import VERSION as __version__
from countersign_client.errors import (
    ActionMismatch,
    AgentKilled,
    AlreadyExecuted,
    ApiError,
    ApprovalLapsed,
    ApprovalTimeout,
    Cancelled,
    Conflict,
    CountersignError,
    ExecutionNotReported,
    Expired,
    InvalidRequest,
    Killed,
    NotApproved,
    NotFound,
    RateLimited,
    ReceiptRefused,
    Rejected,
    ServerError,
    TransportError,
    Unauthorized,
)
from countersign_client.receipts import InvalidReceipt, verify_receipt
from countersign_client.resources import AgentStatus, Approval, Decision, Deferral
from countersign_client.retrying import RetryPolicy

__all__ = [
    "ActionMismatch",
    "AgentKilled",
    "AgentStatus",
    "AlreadyExecuted",
    "ApiError",
    "Approval",
    "ApprovalLapsed",
    "ApprovalTimeout",
    "AsyncCountersign",
    "Cancelled",
    "Conflict",
    "Countersign",
    "CountersignError",
    "Decision",
    "Deferral",
    "ExecutionNotReported",
    "Expired",
    "InvalidCallback",
    "InvalidReceipt",
    "InvalidRequest",
    "Killed",
    "NotApproved",
    "NotFound",
    "RateLimited",
    "ReceiptRefused",
    "Rejected",
    "RetryPolicy",
    "SeenIds",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "WebhookIdStore",
    "__version__",
    "action_digest",
    "canonical_json",
    "ensure_runnable",
    "verify_callback",
    "verify_receipt",
]
