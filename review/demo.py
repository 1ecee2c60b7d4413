"""The demo (COUNTERSIGN_DEMO=1): an admin to log in with and an agent that defers things.

The demo agent is a real registered agent with a real secret. Like any agent runtime it
keeps its secret in its own configuration: here a 0600 file under instance/. Its
requests go through the whole signed API path (see approval_queue/demo_agent.py).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from review.agents.registry import create_agent, find_agent, update_agent
from review.models import Deferral, User
from review.services import Services
from review.users import create_user

DEMO_AGENT = "demo-ops-bot"
DEMO_ADMIN = "admin"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")


def ensure_demo(svc: Services) -> str | None:
    """Create the admin (when there are no users) and the demo agent; return a new password."""
    instance = svc.settings.instance_path
    password = None
    with svc.db.write() as session:
        if session.scalar(select(func.count()).select_from(User)) == 0:
            password = secrets.token_urlsafe(12)
            create_user(session, DEMO_ADMIN, "admin", password, actor=("system", "demo"))
            _write_private(instance / "demo-admin-password", password)
        if find_agent(session, DEMO_AGENT) is None:
            owner = session.scalar(select(User.username).where(User.role == "admin").limit(1))
            created = create_agent(
                session,
                svc.box,
                DEMO_AGENT,
                [owner or DEMO_ADMIN],
                name="Demo operations bot",
                actor=("system", "demo"),
            )
            _write_private(instance / "demo-agent.secret", created.secret)
    return password


def point_demo_callbacks(svc: Services, url: str) -> None:
    """Send the demo agent's callbacks to `url` (its receiver, review/demo_receiver.py);
    audited as `agent.updated` when it changes."""
    with svc.db.write() as session:
        agent = find_agent(session, DEMO_AGENT)
        if agent is None or agent.callback_url == url:
            return
        update_agent(
            session,
            agent,
            name=agent.name,
            owners=[u.username for u in agent.owners],
            callback_url=url,
            trace_url_template=agent.trace_url_template,
            breaker_flood=agent.breaker_flood,
            breaker_rejections=agent.breaker_rejections,
            allow_private_callbacks=svc.settings.allow_private_callbacks,
            actor=("system", "demo"),
        )


def demo_admin_password(svc: Services) -> str | None:
    path = svc.settings.instance_path / "demo-admin-password"
    return path.read_text().strip() if path.exists() else None


def demo_secret(svc: Services) -> str | None:
    path = svc.settings.instance_path / "demo-agent.secret"
    return path.read_text().strip() if path.exists() else None


def pending_demo_count(svc: Services) -> int:
    with svc.db.read() as session:
        agent = find_agent(session, DEMO_AGENT)
        if agent is None:
            return 0
        return session.scalar(
            select(func.count())
            .select_from(Deferral)
            .where(Deferral.agent_id == agent.id, Deferral.status.in_(("pending", "in_review")))
        )


def _trace(n: str) -> dict[str, str]:
    return {"id": n, "url": f"https://traces.example.com/t/{n}"}


SAMPLES: list[dict[str, Any]] = [
    {
        "action": {
            "tool": "billing.refund",
            "args": {
                "invoice": "INV-20931",
                "amount": 740,
                "currency": "USD",
                "customer": "C-88319",
            },
        },
        "summary": "Refund $740 to customer C-88319 for a double charge",
        "on_behalf_of": {"id": "alice@example.com", "display_name": "Alice Moreau"},
        "rationale": "Customer was charged twice on 2026-11-18 (INV-20931 and INV-20932). "
        "Policy allows a refund of the duplicate.",
        "before": {"invoice": "INV-20931", "status": "paid", "refunded": 0, "balance": 740},
        "after": {"invoice": "INV-20931", "status": "refunded", "refunded": 740, "balance": 0},
        "resource": {"type": "invoice", "id": "INV-20931"},
        "risk": {"score": 40, "reasons": ["refund under $1000"]},
        "trace": _trace("a1f8"),
        "labels": {"env": "prod", "team": "billing"},
    },
    {
        "action": {
            "tool": "email.send",
            "args": {
                "to": ["dana.kim@gmail.com"],
                "subject": "About your cancelled order",
                "body": "Hi Dana, we're sorry, your order #55120 was cancelled because...",
            },
        },
        "summary": "Email customer dana.kim@gmail.com about a cancelled order",
        "on_behalf_of": {"id": "system:order-followups"},
        "rationale": "Order #55120 was cancelled by the warehouse; template 'cancel-apology'.",
        "trace": _trace("b77c"),
        "labels": {"env": "prod"},
    },
    {
        "action": {
            "tool": "crm.delete_contacts",
            "args": {"ids": [f"CT-{n}" for n in range(40100, 40350)], "reason": "duplicates"},
        },
        "summary": "Delete 250 duplicate CRM contacts",
        "on_behalf_of": {"id": "ben@example.com", "display_name": "Ben Ortiz"},
        "rationale": "Dedup job found 250 contacts with identical e-mail and phone.",
        "resource": {"type": "crm.contacts", "id": "segment:dupes-2026-11"},
        "trace": _trace("c03d"),
        "labels": {"env": "prod", "team": "sales-ops"},
    },
    {
        "action": {
            "tool": "terraform.apply",
            "args": {"workspace": "payments-prod", "plan": "plan-88a1", "resources_changed": 1},
        },
        "summary": "Resize payments-prod database to db.r6g.2xlarge",
        "on_behalf_of": {"id": "chen@example.com", "display_name": "Chen Wei"},
        "rationale": "CPU above 85% for 3 days; resize during the low-traffic window.",
        "before": {
            "aws_db_instance.payments": {
                "instance_class": "db.r6g.xlarge",
                "allocated_storage": 500,
                "multi_az": True,
            }
        },
        "after": {
            "aws_db_instance.payments": {
                "instance_class": "db.r6g.2xlarge",
                "allocated_storage": 500,
                "multi_az": True,
            }
        },
        "resource": {"type": "aws_db_instance", "id": "payments"},
        "trace": _trace("d19e"),
        "labels": {"env": "prod", "team": "platform"},
        "expires_in": 3600,
    },
    {
        "action": {
            "tool": "iam.grant_role",
            "args": {"user": "contractor-17@example.com", "role": "admin", "project": "warehouse"},
        },
        "summary": "Grant admin on 'warehouse' to contractor-17",
        "on_behalf_of": {"id": "dmitri@example.com", "display_name": "Dmitri Volkov"},
        "rationale": "Contractor needs to fix the broken loader tonight.",
        "before": {"user": "contractor-17@example.com", "role": "viewer"},
        "after": {"user": "contractor-17@example.com", "role": "admin"},
        "trace": _trace("e2a0"),
    },
    {
        "action": {
            "tool": "stripe.payout",
            "args": {"amount": 12500, "currency": "EUR", "destination": "acct_1Q2w3E"},
        },
        "summary": "Pay out EUR 12,500 to partner acct_1Q2w3E",
        "on_behalf_of": {"id": "system:partner-settlement"},
        "rationale": "Monthly partner settlement for October.",
        "risk": {"score": 90, "reasons": ["large payout"]},
        "trace": _trace("f4b2"),
        "labels": {"env": "prod", "team": "finance"},
    },
    {
        "action": {
            "tool": "calendar.create_event",
            "args": {
                "title": "Quarterly review",
                "attendees": ["eve@example.com", "frank@example.com"],
            },
        },
        "summary": "Schedule the quarterly review with Eve and Frank",
        "on_behalf_of": {"id": "eve@example.com", "display_name": "Eve Laurent"},
        "trace": _trace("0a91"),
    },
    {
        "action": {
            "tool": "crm.update_contact",
            "args": {"id": "CT-7731", "email": "new-address@example.org"},
        },
        "summary": "Change the e-mail address of contact CT-7731",
        "on_behalf_of": {"id": "gina@example.com", "display_name": "Gina Russo"},
        "rationale": "Customer asked by phone to update their address.",
        "before": {"id": "CT-7731", "name": "Hal Jordan", "email": "hal@example.org"},
        "after": {"id": "CT-7731", "name": "Hal Jordan", "email": "new-address@example.org"},
        "trace": _trace("1bc4"),
    },
]
