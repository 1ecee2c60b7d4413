"""The Slack message for a deferral, as posted and as updated once people act on it.

Block Kit (https://docs.slack.dev/reference/block-kit/blocks): the summary, risk level
and score, the factors that weigh most, the diff's first lines, the principal, the time
left; **Approve** and **Reject** buttons (their `value` is the deferral's id; the click
comes back as a signed interaction request, review/web/slack_interactions.py) and a link
button to `<COUNTERSIGN_PUBLIC_URL>/deferrals/<id>`. Once the deferral has ended the
decision buttons are gone and the outcome says who decided ("Approved by alice",
"Rejected by bob: reason"); between two approvals it says who gave the first.

Every piece of agent text goes through review/notifications/channels/slack_text.py.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from review.models import TERMINAL_STATUSES, Deferral, utcnow
from review.notifications.channels.slack_text import code_block, cut, escape, ours, plain
from review.reviewing.decisions import ended_how

APPROVE = "countersign_approve"  # action_id of the Approve button
REJECT = "countersign_reject"  # action_id of the Reject button
OPEN = "countersign_open"  # action_id of the link button (Slack reports its clicks too)
OUTCOME_BLOCK = "countersign_outcome"
ACTIONS_BLOCK = "countersign_actions"
TOP_FACTORS = 3
DIFF_CHANGES = 3
DIFF_LINES = 12
VALUE_CHARS = 120  # one old or new value in the diff's lines


def deferral_link(public_url: str, deferral_id: str) -> str:
    return f"{public_url}/deferrals/{deferral_id}"


def time_left(expires_at: datetime, now: datetime) -> str:
    seconds = int((expires_at - now).total_seconds())
    if seconds <= 0:
        return "expired"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{seconds} s"


def slack_date(at: datetime) -> str:
    """A time each reader sees in their own time zone (Slack's date formatting), with
    the UTC time as the fallback."""
    fallback = at.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def outcome_line(deferral: Deferral) -> str | None:
    """What people did, in words: None while nobody has acted."""
    if deferral.status in TERMINAL_STATUSES:
        text = ended_how(deferral)
        return text[:1].upper() + text[1:]
    given = deferral.approvers  # short of its quorum (docs/ROUTING.md)
    if given:
        return f"{len(given)} of {deferral.required_approvals} approvals — {', '.join(given)}"
    return None


def diff_lines(deferral: Deferral) -> list[str]:
    """The diff's first lines as text (the card's preview, review/templates card/_diff)."""
    changes = (deferral.diff or {}).get("changes") or []
    if not changes:
        args = json.dumps((deferral.action or {}).get("args"), ensure_ascii=False, indent=1)
        return args.splitlines()[:DIFF_LINES]
    lines: list[str] = []
    for change in changes[:DIFF_CHANGES]:
        path = change.get("path") or "(whole)"
        op = str(change.get("op", "changed")).replace("_", " ")
        if "lines" in change:
            lines.append(f"{op} {path}:")
            lines += [f"{'' if k == '@' else k}{text}" for k, text in change["lines"][:6]]
        elif change.get("op") == "added":
            lines.append(f"+ {path}: {_value(change.get('new'))}")
        elif change.get("op") == "removed":
            lines.append(f"- {path}: {_value(change.get('old'))}")
        else:
            lines.append(f"~ {path}: {_value(change.get('old'))} → {_value(change.get('new'))}")
    more = len(changes) - DIFF_CHANGES
    if more > 0:
        lines.append(f"… {more} more change{'s' if more != 1 else ''} on the page")
    return lines[:DIFF_LINES]


def _value(value: Any) -> str:
    return cut(json.dumps(value, ensure_ascii=False), VALUE_CHARS)


def top_factors(deferral: Deferral) -> list[str]:
    factors = sorted(deferral.risk_factors or [], key=lambda f: -int(f.get("points", 0)))
    return [
        f"+{f.get('points', 0)} {f.get('detail', '')} ({f.get('rule', '')})"
        for f in factors[:TOP_FACTORS]
    ]


def title(deferral: Deferral, heading: str | None = None) -> str:
    """ "High-risk deferral", or with a heading: "Still unclaimed: high-risk deferral"."""
    level = deferral.risk_level
    if heading:
        return f"{heading}: {level}-risk deferral"
    return f"{level.capitalize()}-risk deferral"


def fallback_text(deferral: Deferral, heading: str | None = None) -> str:
    """The message's `text`: what notifications and screen readers show. Escaped; the
    message is sent with mrkdwn off, so nothing in it is formatted."""
    outcome = outcome_line(deferral)
    head = f"{title(deferral, heading)} from {deferral.agent.slug}"
    text = f"{head}: {escape(deferral.summary)}"
    return cut(text + (f" — {escape(outcome)}" if outcome else ""), 3000)


def blocks(
    deferral: Deferral, public_url: str, now: datetime | None = None, heading: str | None = None
) -> list[dict]:
    """The message's blocks for the deferral as it is now."""
    now = now or utcnow()
    level = deferral.risk_level
    principal = deferral.principal_id
    if deferral.principal_name:
        principal = f"{deferral.principal_name} ({deferral.principal_id})"
    made = [
        {"type": "header", "text": plain(title(deferral, heading), 150)},
        {"type": "section", "text": plain(deferral.summary)},
        {
            "type": "section",
            "fields": [
                ours(f"*Risk*\n{level}, score {int(deferral.risk_score)}"),
                ours(f"*Agent*\n{deferral.agent.slug}"),
                plain(f"On behalf of: {principal}", 2000),
                plain(f"Tool: {deferral.tool}", 2000),
                ours(f"*Time left*\n{_time_left(deferral, now)}"),
            ],
        },
    ]
    factors = top_factors(deferral)
    if factors:
        made.append(
            {"type": "section", "text": plain(f"Why {deferral.risk_score}:\n" + "\n".join(factors))}
        )
    made.append({"type": "section", "text": code_block(diff_lines(deferral))})
    made.append(
        {
            "type": "context",
            "elements": [
                ours("Summary, principal, tool and changes are the agent's words, not ours.")
            ],
        }
    )
    outcome = outcome_line(deferral)
    if outcome:
        made.append({"type": "section", "block_id": OUTCOME_BLOCK, "text": plain(outcome)})
    made.append(
        {
            "type": "actions",
            "block_id": ACTIONS_BLOCK,
            "elements": _buttons(deferral, deferral_link(public_url, deferral.id)),
        }
    )
    return made


def _time_left(deferral: Deferral, now: datetime) -> str:
    if deferral.status in TERMINAL_STATUSES:
        return "decided"
    return f"{time_left(deferral.expires_at, now)} (until {slack_date(deferral.expires_at)})"


def _buttons(deferral: Deferral, link: str) -> list[dict]:
    open_button = {
        "type": "button",
        "action_id": OPEN,
        "text": plain("Open in Countersign", 75),
        "url": link,
    }
    if deferral.status in TERMINAL_STATUSES:
        return [open_button]
    return [
        {
            "type": "button",
            "action_id": APPROVE,
            "style": "primary",
            "text": plain("Approve", 75),
            "value": deferral.id,
            "confirm": {
                "title": plain("Approve this action?", 100),
                "text": plain(deferral.summary, 300),
                "confirm": plain("Approve", 30),
                "deny": plain("Cancel", 30),
            },
        },
        {
            "type": "button",
            "action_id": REJECT,
            "style": "danger",
            "text": plain("Reject", 75),
            "value": deferral.id,
        },
        open_button,
    ]
