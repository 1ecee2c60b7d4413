"""What a message says, in plain text (e-mail's body and subject; a base for others).

Agent text is untrusted: `shown` makes hidden characters visible as ⟨U+202E⟩ (as the
pages and Slack do), `one_line` makes it fit a header (no controls or line breaks at all),
and every agent field is labelled as the agent's. Countersign's own words say what the
message is and what to do; the link goes to the item's page.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any

from review.models import Deferral
from review.notifications import kinds
from review.notifications.channels.base import Message

_CANDIDATE = re.compile(r"\r(?!\n)|[^\t\n\r\x20-\x7e]")
_HIDDEN = {"Cc", "Cf", "Zl", "Zp", "Zs"}
_INVISIBLE_LETTERS = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u034f"}
SUBJECT_AGENT_CHARS = 80


def _hidden(char: str) -> bool:
    if char == " ":
        return False
    return unicodedata.category(char) in _HIDDEN or char in _INVISIBLE_LETTERS


def shown(text: Any) -> str:
    """Hidden characters (bidi overrides, zero-width, controls, odd spaces) as ⟨U+XXXX⟩."""
    if text is None:
        return ""

    def mark(match: re.Match[str]) -> str:
        char = match.group()[0]
        return f"⟨U+{ord(char):04X}⟩" if _hidden(char) else match.group()

    return _CANDIDATE.sub(mark, str(text))


def one_line(text: Any, limit: int) -> str:
    """Untrusted text for a header: hidden characters and line breaks become spaces,
    runs of space one, at most `limit` characters."""
    cleaned = "".join(" " if _hidden(c) or c in "\r\n\t" else c for c in str(text or ""))
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _minutes(seconds: float) -> str:
    minutes = max(int(seconds // 60), 0)
    if minutes >= 120:
        return f"{minutes // 60} h"
    return f"{minutes} min"


def _seconds(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def subject_line(message: Message) -> str:
    n = len(message.deferrals)
    if message.kind in (kinds.AGENT_KILLED, kinds.AGENT_REVIVED):
        slug = message.payload.get("slug", "?")
        verb = "stopped" if message.kind == kinds.AGENT_KILLED else "running again"
        return f"[Countersign] Agent {slug} {verb}"
    if message.kind == kinds.DIGEST:
        return f"[Countersign] Daily digest: {message.payload.get('waiting', n)} waiting"
    if n != 1:
        lead = {
            kinds.ESCALATED: "still unclaimed",
            kinds.EXPIRING: "expire soon",
        }.get(message.kind, "wait for review")
        return f"[Countersign] {n} deferrals {lead}"
    d = message.deferrals[0]
    lead = {
        kinds.WAITING: f"{d.risk_level} deferral waits",
        kinds.ESCALATED: f"unclaimed for {_minutes(_seconds(d.created_at, message.created_at))}",
        kinds.EXPIRING: f"expires in {_minutes(_seconds(message.created_at, d.expires_at))}",
        kinds.DECIDED: f"deferral {d.status}",
    }.get(message.kind, message.kind)
    return f"[Countersign] {lead}: {one_line(d.summary, SUBJECT_AGENT_CHARS)} ({d.agent.slug})"


def _deferral_lines(message: Message, d: Deferral, now: datetime) -> list[str]:
    return [
        f"Risk: {d.risk_level} ({d.risk_score})    Agent: {d.agent.slug}    Tool: {shown(d.tool)}",
        f"Summary (from the agent): {shown(d.summary)}",
        f"On behalf of (from the agent): {shown(d.principal_name or d.principal_id)}",
        f"Waiting since: {d.created_at:%Y-%m-%d %H:%M} UTC"
        f"    Expires: {d.expires_at:%Y-%m-%d %H:%M} UTC",
        f"Open it: {message.link(d.id)}",
    ]


def render_text(message: Message) -> str:
    """The plain-text body."""
    now = message.created_at
    if message.kind in (kinds.AGENT_KILLED, kinds.AGENT_REVIVED):
        p = message.payload
        if message.kind == kinds.AGENT_KILLED:
            head = (
                f"The kill switch of agent {p.get('slug')} ({shown(p.get('name'))})"
                " was flipped: it is stopped."
            )
            tail = (
                f"Undecided deferrals it had, now ended as killed: {p.get('deferrals_ended', 0)}."
            )
        else:
            head = (
                f"Agent {p.get('slug')} ({shown(p.get('name'))}) was revived: it may defer again."
            )
            tail = "What the kill switch ended stays ended."
        return "\n".join(
            [
                head,
                f"By: {shown(p.get('by'))}",
                f"Reason: {shown(p.get('reason'))}",
                tail,
                "",
                "You get this because you own the agent.",
                f"Its page: {message.public_url}/agents/{p.get('slug')}",
                "",
            ]
        )
    intro = {
        kinds.WAITING: "A deferral waits for a person's decision.",
        kinds.ESCALATED: "Nobody has claimed this deferral yet; you are the next tier.",
        kinds.EXPIRING: "This deferral expires soon, undecided (expiry denies it).",
        kinds.DIGEST: "What waits for review now.",
        kinds.DECIDED: "This deferral has ended.",
    }.get(message.kind, "Countersign")
    if len(message.deferrals) > 1 or message.kind == kinds.DIGEST:
        intro = {
            kinds.WAITING: f"{len(message.deferrals)} deferrals wait for a person's decision.",
            kinds.ESCALATED: f"{len(message.deferrals)} deferrals are still unclaimed;"
            " you are the next tier.",
            kinds.EXPIRING: f"{len(message.deferrals)} deferrals expire soon, undecided.",
        }.get(message.kind, intro)
    lines = [intro, ""]
    if message.kind == kinds.DIGEST:
        counts = message.payload.get("by_level", {})
        lines.append(
            "Waiting: "
            + ", ".join(
                f"{level} {counts[level]}"
                for level in ("critical", "high", "medium", "low")
                if level in counts
            )
        )
        lines.append("")
    for d in message.deferrals:
        lines.extend(_deferral_lines(message, d, now))
        lines.append("")
    lines.append(f"The queue: {message.queue_link}")
    lines.append("Links only show the item; deciding takes you, logged in.")
    return "\n".join(lines) + "\n"
