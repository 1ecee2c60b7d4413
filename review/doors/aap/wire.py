"""AAP's wire format (the `agentapprovalprotocol` package, 0.3.x): ids, times, durations,
the submission and how it becomes a deferral, and the request resource.

An AAP request is a deferral. Its id is the deferral's ULID read as the 128-bit number it
is, written as a UUID (`dfr_01JD0Q8W4T...` <-> `019381b8-...`), so nothing maps ids.

A submission `{tool, arguments, timeout, server?, agent_reasoning?, context?}` becomes the
deferral request (PROTOCOL.md 4.1):

| AAP | deferral |
| --- | --- |
| `tool`, `arguments` | `action: {tool, args}` |
| `agent_reasoning` | `rationale` (shown to reviewers as the agent's claim) |
| `timeout` | `expires_in`: the decision deadline, shortened to 7 days, never lengthened |
| `server` | label `aap_server`, and the summary |
| (none) | `summary`: "AAP request: TOOL" (+ " on SERVER") |
| (none) | `on_behalf_of: {id: "system:aap:SLUG"}`: AAP names no principal |
| the instance | labels `via: aap` and `aap_instance` (its name), when registered |
| `context` | kept in the submission (echoed, and part of idempotency); not shown |

The resource echoes the submission byte for byte (the stored text, spliced after the
service's fields), so a client comparing "what I sent" with "what came back" compares
exactly: numbers keep their spelling, keys their order.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from review.audit.hashing import canonical_json
from review.errors import InvalidRequest
from review.ids import CROCKFORD
from review.models import TERMINAL_STATUSES, Deferral, Execution

FIELDS = ("tool", "arguments", "timeout", "server", "agent_reasoning", "context")
DURATION = re.compile(r"^([1-9][0-9]{0,8})([smh])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
MAX_DEADLINE = 604800  # a deferral's longest life (PROTOCOL.md 4.1 expires_in)
MAX_WAIT = 30  # AAP caps ?wait= at 30 s
MAX_TOOL = 200
MAX_SERVER = 200  # a label value's limit
MAX_REASONING = 10000  # rationale's limit
OUTCOMES = ("succeeded", "failed")
MAX_NOTE = 2000


# --- ids and times ------------------------------------------------------------------------


def request_id(deferral_id: str) -> str:
    """The deferral's ULID as a UUID: the same 128 bits."""
    value = 0
    for char in deferral_id.removeprefix("dfr_"):
        value = value * 32 + CROCKFORD.index(char)
    return str(uuid.UUID(int=value))


def deferral_id(request_id_text: str) -> str | None:
    """The deferral a request id names; None when it is not a UUID."""
    try:
        value = uuid.UUID(request_id_text)
    except (ValueError, TypeError):
        return None
    if str(value) != request_id_text.lower():  # the plain 8-4-4-4-12 form only
        return None
    number, chars = value.int, []
    for _ in range(26):
        chars.append(CROCKFORD[number & 31])
        number >>= 5
    return "dfr_" + "".join(reversed(chars))


def stamp(at: datetime) -> str:
    """UTC RFC 3339 with microseconds and Z: a stored time read back prints the same."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duration_seconds(text: Any, *, param: str) -> int:
    """`30s`, `10m`, `24h`: a positive whole number and its unit, as seconds."""
    match = DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise _invalid(param, "must be a duration like 30s, 10m or 24h")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def _not_an_object() -> InvalidRequest:
    return InvalidRequest(
        "the body must be a JSON object", details=[{"path": "", "message": "must be an object"}]
    )


def _invalid(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param} {message}", details=[{"path": "/" + param, "message": message}])


# --- the submission -----------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """A checked AAP submission, and its text exactly as it came."""

    fields: dict[str, Any]
    text: str

    @property
    def hash(self) -> str:
        """The same for the same fields, however spaced or ordered (RFC 8785)."""
        return hashlib.sha256(canonical_json(self.fields)).hexdigest()

    @property
    def deadline_seconds(self) -> int:
        return min(duration_seconds(self.fields["timeout"], param="timeout"), MAX_DEADLINE)

    def deferral_request(self, agent_slug: str, instance_name: str | None) -> dict[str, Any]:
        """The deferral request (PROTOCOL.md 4.1) this submission asks for (the table above)."""
        f = self.fields
        labels = {"via": "aap"}
        summary = f"AAP request: {f['tool']}"
        if "server" in f:
            labels["aap_server"] = f["server"]
            summary += f" on {f['server']}"
        if instance_name:
            labels["aap_instance"] = instance_name[:200]
        body: dict[str, Any] = {
            "action": {"tool": f["tool"], "args": f["arguments"]},
            "summary": summary[:500],
            "on_behalf_of": {"id": f"system:aap:{agent_slug}"},
            "expires_in": self.deadline_seconds,
            "labels": labels,
        }
        if f.get("agent_reasoning"):
            body["rationale"] = f["agent_reasoning"]
        return body


def read_submission(value: Any, text: str) -> Submission:
    """Check a parsed submission against AAP's CreateApprovalRequest; 400 naming the field."""
    if not isinstance(value, dict):
        raise _not_an_object()
    for key in value:
        if key not in FIELDS:
            raise _invalid(key, "is not a field of an AAP request")
    for key in ("tool", "arguments", "timeout"):
        if key not in value:
            raise _invalid(key, "is required")
    _text(value, "tool", 1, MAX_TOOL)
    if not isinstance(value["arguments"], dict):
        raise _invalid("arguments", "must be an object")
    duration_seconds(value["timeout"], param="timeout")
    if "server" in value:
        _text(value, "server", 1, MAX_SERVER)
    if "agent_reasoning" in value:
        _text(value, "agent_reasoning", 0, MAX_REASONING)
    if "context" in value and not isinstance(value["context"], dict):
        raise _invalid("context", "must be an object")
    return Submission(value, text)


def _text(value: dict[str, Any], key: str, shortest: int, longest: int) -> None:
    if not isinstance(value[key], str):
        raise _invalid(key, "must be a string")
    if not shortest <= len(value[key]) <= longest:
        raise _invalid(key, f"must be {shortest} to {longest} characters")


def read_outcome(value: Any) -> tuple[str, str | None]:
    """An outcome report `{status: succeeded|failed, note?}`."""
    if not isinstance(value, dict):
        raise _not_an_object()
    for key in value:
        if key not in ("status", "note"):
            raise _invalid(key, "is not a field of an outcome")
    if value.get("status") not in OUTCOMES:
        raise _invalid("status", "must be succeeded or failed")
    if "note" in value:
        _text(value, "note", 1, MAX_NOTE)
    return value["status"], value.get("note")


# --- the request resource -----------------------------------------------------------------

# A deferral's status, as AAP has it (its five: pending, approved, denied, expired, cancelled).
STATUS = {
    "pending": "pending",
    "in_review": "pending",
    "approved": "approved",
    "rejected": "denied",
    "killed": "denied",  # the kill switch ended it: a denial, its reason the note
    "expired": "expired",
    "cancelled": "cancelled",
}
EDITED_NOTE = (
    "A reviewer approved different arguments, which an AAP approval cannot carry: "
    "ask again with the arguments to run."
)


def aap_status(deferral: Deferral, submitted_digest: str) -> str:
    """AAP's status: an approval of another action than the one submitted is no approval."""
    status = STATUS[deferral.status]
    if status == "approved" and deferral.action_digest != submitted_digest:
        return "denied"
    return status


def decision(deferral: Deferral, submitted_digest: str) -> dict[str, Any] | None:
    if deferral.status not in TERMINAL_STATUSES:
        return None
    status = aap_status(deferral, submitted_digest)
    out: dict[str, Any] = {"status": status}
    note = deferral.decision_reason
    if status == "denied" and deferral.status == "approved":
        note = EDITED_NOTE
    if note:
        out["note"] = note
    out["decided_at"] = stamp(deferral.decided_at)
    if status == "approved":
        out["expires_at"] = stamp(deferral.valid_until)
    return out


def consumption(consumed_at: datetime | None, execution: Execution | None) -> dict[str, Any] | None:
    if consumed_at is None:
        return None
    out: dict[str, Any] = {"consumed_at": stamp(consumed_at)}
    if execution is not None:
        report: dict[str, Any] = {"status": execution.outcome}
        note = execution.result.get("note") if isinstance(execution.result, dict) else None
        if isinstance(note, str) and note:
            report["note"] = note
        report["reported_at"] = stamp(execution.reported_at)
        out["outcome"] = report
    return out


def request_resource(
    deferral: Deferral,
    submission_text: str,
    submitted_digest: str,
    consumed_at: datetime | None = None,
    execution: Execution | None = None,
) -> str:
    """The AAP request as JSON text: the service's fields, then the submission as sent."""
    status = aap_status(deferral, submitted_digest)
    fields: dict[str, Any] = {
        "id": request_id(deferral.id),
        "status": status,
        "created_at": stamp(deferral.created_at),
        "deadline_at": stamp(deferral.expires_at),
    }
    made = decision(deferral, submitted_digest)
    if made is not None:
        fields["decision"] = made
    if status == "approved":
        used = consumption(consumed_at, execution)
        if used is not None:
            fields["consumption"] = used
    head = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    # The submission is a JSON object with none of these keys (read_submission): drop
    # its opening brace and append it to ours.
    return head[:-1] + "," + submission_text.strip()[1:]
