"""The Slack message: what it shows, and that agent text in it is inert (no mention, no
link, no formatting, no hidden character), as Slack received it from slack_sdk."""

from __future__ import annotations

import json
import re

import pytest

from review.models import Deferral
from review.notifications.channels.slack_jobs import post_message
from review.notifications.channels.slack_text import code_block, cut, escape, plain
from tests.helpers import refund
from tests.slack_standin import SIGNING_SECRET, TOKEN, SlackStandIn

HOSTILE = (
    "<!channel> <!here|here> <@U0ADMIN> <#C0GENERAL> <!subteam^S0OPS> "
    "<https://evil.example/approve|Approve here> https://evil.example/bare @here "
    "*URGENT* _now_ ~really~ `code` ```block``` &amp; & :rotating_light: "
    "pay\u202etxt.exe zero\u200bwidth"
)
ESCAPED_CONTROLS = ("&lt;!channel&gt;", "&lt;@U0ADMIN&gt;", "&lt;https://evil.example/approve|")


@pytest.fixture
def standin():
    made = SlackStandIn()
    yield made
    made.close()


@pytest.fixture
def posted(make_app, make_agent, standin):
    """A high-risk deferral whose every agent-supplied field is hostile, posted to Slack;
    what Slack received."""
    app = make_app(
        slack_bot_token=TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_channel="C0APPROVALS",
        slack_api_url=standin.api_url,
        public_url="https://countersign.example.com",
    )
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    body = refund(
        summary=HOSTILE[:500],
        on_behalf_of={"id": "<!channel>@example.com", "display_name": "*Boss* <@U0CEO>"},
        rationale=HOSTILE,
        risk={"score": 60, "reasons": [HOSTILE[:200]]},
        before={"note": "ok"},
        after={"note": "```\n<!channel> *x*\n```"},
    )
    body["action"]["tool"] = "billing.refund`*<!here>*`"
    d_id = agent.defer(body).get_json()["id"]
    with svc.db.read() as session:
        ref = post_message(svc, session.get(Deferral, d_id))
    [call] = standin.calls_of("chat.postMessage")
    return d_id, ref, call


def _texts(value):
    """Every text object in blocks (walks the JSON)."""
    if isinstance(value, dict):
        if value.get("type") in ("plain_text", "mrkdwn") and "text" in value:
            yield value
        for inner in value.values():
            yield from _texts(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _texts(inner)


def test_the_message_has_the_facts_the_buttons_and_the_link(posted):
    d_id, ref, call = posted
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.headers["Content-Type"].startswith("application/json")
    assert call.args["channel"] == "C0APPROVALS" and ref.channel == "C0APPROVALS"
    blocks = call.args["blocks"]
    shown = json.dumps(blocks, ensure_ascii=False)
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "High-risk deferral", "emoji": False},
    }
    for fact in (
        "*Risk*\\nhigh, score 60",
        "*Agent*\\nbilling-bot",
        "*Time left*\\n23 h ",
        "On behalf of: *Boss* &lt;@U0CEO&gt; (&lt;!channel&gt;@example.com)",
    ):
        assert fact in shown
    [actions] = [b for b in blocks if b["type"] == "actions"]
    approve, reject, link = actions["elements"]
    assert (approve["action_id"], approve["value"], approve["style"]) == (
        "countersign_approve",
        d_id,
        "primary",
    )
    assert (reject["action_id"], reject["value"], reject["style"]) == (
        "countersign_reject",
        d_id,
        "danger",
    )
    assert (
        link["url"] == f"https://countersign.example.com/deferrals/{d_id}" and "value" not in link
    )
    assert call.args["text"].startswith("High-risk deferral from billing-bot: ")
    assert call.args["mrkdwn"] is False and call.args["unfurl_links"] is False


def test_agent_text_cannot_mention_link_or_format(posted):
    _d_id, _ref, call = posted
    shown = json.dumps(call.args["blocks"], ensure_ascii=False)
    for control in ESCAPED_CONTROLS:
        assert control in shown
    # The only control sequence in the message is our own date.
    assert re.findall(r"<[^>]*>", shown) != []
    assert all(m.startswith("<!date^") for m in re.findall(r"<[^>]*>", shown))
    assert "<" not in call.args["text"] and "&lt;!channel&gt;" in call.args["text"]
    for text in _texts(call.args["blocks"]):
        if text["type"] == "plain_text":
            assert text["emoji"] is False
        else:  # mrkdwn: ours, or the diff's code block; never parsed for links or mentions
            assert text["verbatim"] is True
    [code] = [t for t in _texts(call.args["blocks"]) if t["text"].startswith("```")]
    inside = code["text"][3:-3]
    assert "`" not in inside and "ˋˋˋ" in inside and "&lt;!channel&gt; *x*" in inside
    agent_words = [t for t in _texts(call.args["blocks"]) if "URGENT" in t["text"]]
    assert agent_words and all(t["type"] == "plain_text" for t in agent_words)


def test_hidden_characters_are_shown(posted):
    _d_id, _ref, call = posted
    shown = json.dumps(call.args["blocks"], ensure_ascii=False)
    assert "pay⟨U+202E⟩txt.exe" in shown and "zero⟨U+200B⟩width" in shown
    assert "\u202e" not in shown and "\u200b" not in shown


def test_escape_and_cut():
    assert escape("a < b && c > d") == "a &lt; b &amp;&amp; c &gt; d"
    assert escape("&lt;") == "&amp;lt;"  # already-escaped-looking text stays what it was
    assert cut("x" * 10, 5) == "xxxx…"
    assert cut("abc&lt;", 6) == "abc…"  # never through an escape
    assert plain("<@U1>")["text"] == "&lt;@U1&gt;"
    assert plain("")["text"] == " "  # Slack refuses empty text
    block = code_block(["```", "a`b"])
    assert block["text"] == "```ˋˋˋ\naˋb```" and block["verbatim"] is True


def test_slack_settings_come_all_three_or_none(settings_overrides):
    from review.settings import SettingsError, load_settings

    with pytest.raises(
        SettingsError, match="COUNTERSIGN_SLACK_SIGNING_SECRET, COUNTERSIGN_SLACK_CHANNEL"
    ):
        load_settings(environ={}, overrides={**settings_overrides, "slack_bot_token": "xoxb-1"})
    with pytest.raises(SettingsError, match="COUNTERSIGN_SLACK_API_URL"):
        load_settings(
            environ={}, overrides={**settings_overrides, "slack_api_url": "http://a.example/api"}
        )
    made = load_settings(
        environ={}, overrides={**settings_overrides, "slack_api_url": "http://127.0.0.1:9/api"}
    )
    assert made.slack_api_url == "http://127.0.0.1:9/api/" and made.slack_bot_token == ""


def test_the_app_manifest_in_the_docs_asks_for_the_scopes_and_names_the_route():
    """docs/NOTIFICATIONS.md's manifest, as an operator pastes it into Slack."""
    import yaml

    from tests.helpers import ROOT

    text = (ROOT / "docs" / "NOTIFICATIONS.md").read_text()
    [manifest] = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    parsed = yaml.safe_load("\n".join(line[3:] for line in manifest.splitlines()))
    assert parsed["oauth_config"]["scopes"]["bot"] == [
        "chat:write",
        "users:read",
        "users:read.email",
    ]
    interactivity = parsed["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert interactivity["request_url"].endswith("/integrations/slack/interactions")
