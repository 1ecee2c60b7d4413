"""Untrusted text made inert for Slack (PROTOCOL.md section 14; DESIGN.md: agent text is
untrusted, escaped for every sink).

Slack reads `<...>` as a control sequence wherever text is parsed: `<!channel>` and
`<!here>` notify everyone, `<@U123>` mentions a person, `<https://evil|Approve here>`
is a link whose label lies. Its documentation says to escape exactly three characters,
`&` as `&amp;`, `<` as `&lt;` and `>` as `&gt;` (and to escape nothing else: only those
three are decoded for display). `escape` does that, and shows each character a reader
would not see as itself (bidirectional overrides, zero-width and other format
characters, controls) as a visible `⟨U+202E⟩`, as the pages do (review/web/filters.py).

Beyond control sequences, mrkdwn turns `*bold*`, `_italic_`, `~strike~` and
`` `code` `` into formatting, and, unless a text object is `verbatim`, links bare URLs
and parses `@here`. Agent text therefore goes into `plain_text` objects (no mrkdwn at
all, emoji off) wherever Block Kit allows one; the diff's code block is the one mrkdwn
object that carries agent text: verbatim, escaped, and with its backticks swapped for a
look-alike (`code_block`), so the text cannot close the block and format what follows.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

_CANDIDATE = re.compile(r"\r(?!\n)|[^\t\n\r\x20-\x7e]")
_HIDDEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}  # controls, format (bidi, zero-width), separators
_INVISIBLE_LETTERS = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u034f"}  # fillers, CGJ
BACKTICK_LOOKALIKE = "\u02cb"  # MODIFIER LETTER GRAVE ACCENT: reads as ` and closes nothing


def _shown(match: re.Match[str]) -> str:
    char = match.group()[0]
    hidden = unicodedata.category(char) in _HIDDEN_CATEGORIES or char in _INVISIBLE_LETTERS
    return f"⟨U+{ord(char):04X}⟩" if hidden else match.group()


def escape(text: Any) -> str:
    """Text for any Slack text field: `& < >` escaped as Slack documents, hidden
    characters shown as ⟨U+XXXX⟩."""
    if text is None:
        return ""
    shown = _CANDIDATE.sub(_shown, str(text))
    return shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    """At most `limit` characters, with an ellipsis when cut (Slack refuses longer fields).
    Cuts before an escape's `&` rather than through it."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    amp = head.rfind("&", max(0, len(head) - 5))
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    return head + "…"


def plain(text: Any, limit: int = 3000) -> dict[str, Any]:
    """A plain_text object holding untrusted text: no formatting, links, mentions or emoji."""
    return {"type": "plain_text", "text": cut(escape(text), limit) or " ", "emoji": False}


def ours(text: str, limit: int = 3000) -> dict[str, Any]:
    """A mrkdwn object for Countersign's own words (which may hold our own `<!date...>`);
    verbatim, so nothing is linked or mentioned that we did not write."""
    return {"type": "mrkdwn", "text": cut(text, limit), "verbatim": True}


def code_block(lines: list[str], limit: int = 2900) -> dict[str, Any]:
    """Untrusted lines in a mrkdwn code block (monospace; nothing inside is formatted)."""
    body = "\n".join(escape(line).replace("`", BACKTICK_LOOKALIKE) for line in lines)
    return {"type": "mrkdwn", "text": f"```{cut(body, limit - 6)}```", "verbatim": True}
