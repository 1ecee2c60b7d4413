"""Each agent's pact (issue 16 item 6): a declared scope and rules scoped to agents, shown
on the agent's page with its behaviour against them; and the policy page for admins."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from review.intake.policy_loading import PolicyError, load_policy
from review.models import Deferral, utcnow
from review.reviewing.claims import claim_batch
from review.reviewing.decisions import decide
from tests.helpers import logged_in, refund, reviewer

POLICY = """
[agents.billing-bot]
description = "Refunds for the billing team"
tools = ["billing.*", "crm.get_*"]

[[rule]]
id = "refund"
kind = "tool"
match = ["billing.refund"]
points = 10
detail = "{tool} moves money"

[[rule]]
id = "no_refund_over_1000"
kind = "argument_over"
keys = ["amount"]
threshold = 1000
points = 0
outcome = "deny"
agents = ["billing-bot"]
detail = "{key} {value} > {threshold}"

[[rule]]
id = "ask_for_credit"
kind = "tool"
match = ["billing.credit"]
points = 0
outcome = "ask"
agents = ["billing-bot"]
detail = "{tool} needs a person"

[[rule]]
id = "reads_are_fine"
kind = "tool"
match = ["crm.get_*"]
points = 0
outcome = "allow"
detail = "{tool} only reads"
"""


@pytest.fixture
def world(make_app, make_agent, tmp_path, people):
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    app = make_app(policy_file=str(path), agent_rate=0)
    svc = app.extensions["countersign"]
    return app, svc, make_agent("billing-bot").on(app), make_agent("ops-bot").on(app)


def action(tool, **args):
    return refund(action={"tool": tool, "args": {"invoice": "INV-1", **args}})


def test_a_tool_outside_the_agents_scope_is_denied_naming_the_scope(world):
    _, _, billing, ops = world
    answer = billing.defer(action("crm.delete_contact"))
    assert answer.status_code == 202
    d = answer.get_json()
    assert d["status"] == "rejected" and d["decision"]["decided_by"] == ["policy"]
    assert d["risk"]["outcome"] == "deny" and d["risk"]["rule"] == "agent_scope"
    assert "outside billing-bot's scope (billing.*, crm.get_*)" in d["decision"]["reason"]
    # An agent without a declared scope may ask for it: a person decides.
    assert ops.defer(action("crm.delete_contact")).get_json()["status"] == "pending"


def test_rules_scoped_to_an_agent_judge_only_its_deferrals(world):
    _, _, billing, ops = world
    denied = billing.defer(action("billing.refund", amount=5000)).get_json()
    assert denied["status"] == "rejected" and denied["risk"]["rule"] == "no_refund_over_1000"
    assert ops.defer(action("billing.refund", amount=5000)).get_json()["status"] == "pending"
    asked = billing.defer(action("billing.credit", amount=5)).get_json()
    assert asked["risk"]["outcome"] == "ask" and asked["risk"]["rule"] == "ask_for_credit"
    assert ops.defer(action("billing.credit", amount=5)).get_json()["risk"]["rule"] is None
    # Rules for every agent still apply inside a scope.
    assert billing.defer(action("crm.get_contact")).get_json()["status"] == "approved"


def test_the_policy_version_covers_the_pacts(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    first = load_policy(path, (25, 50, 75)).version
    path.write_text(POLICY.replace('"crm.get_*"]', '"crm.*"]', 1))
    assert load_policy(path, (25, 50, 75)).version != first


@pytest.mark.parametrize(
    ("text", "line", "said"),
    [
        ('[agents.Billing]\ntools = ["a"]\n', 1, "is not an agent slug"),
        ("[agents.bot]\ntools = []\n", 2, "tools must be a non-empty list"),
        ('[agents.bot]\ntools = ["a"]\nowner = "x"\n', 3, "unknown keys ['owner']"),
        ('[agents.bot]\ntools = ["a"]\ndescription = 3\n', 3, "description must be a string"),
        (
            '[[rule]]\nid = "r"\nkind = "tool"\nmatch = ["a"]\npoints = 1\ndetail = "d"\n'
            'agents = ["Bad Slug"]\n',
            7,
            "agents must be a non-empty list of agent slugs",
        ),
        (
            '[[rule]]\nid = "agent_scope"\nkind = "tool"\nmatch = ["a"]\npoints = 1\n'
            'detail = "d"\n',
            2,
            "the policy's own factor",
        ),
    ],
)
def test_a_bad_pact_is_refused_with_its_line(tmp_path, text, line, said):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path, (25, 50, 75))
    assert caught.value.line == line and said in caught.value.reason


def _figures(html: str) -> dict[str, list[str]]:
    """The behaviour table's rows: '7 days' -> its cells."""
    table = html[html.index('aria-label="Behaviour against the pact"') :]
    table = table[: table.index("</table>")]
    rows = {}
    for row in re.findall(r"<tr><th scope=\"row\">(.*?)</tr>", table, re.S):
        head, *cells = re.split(r"</th>|</td>", row)
        rows[head.strip()] = [re.sub(r"<[^>]+>", "", c).strip() for c in cells if c.strip()]
    return rows


def test_the_agents_page_shows_its_pact_and_its_behaviour_over_7_and_30_days(world):
    app, svc, billing, _ = world
    billing.defer(action("crm.delete_contact"))  # scope violation
    billing.defer(action("billing.refund", amount=5000))  # denied by its own rule
    old = billing.defer(action("crm.drop_table")).get_json()["id"]  # scope violation, old
    asked = billing.defer(action("billing.credit", amount=5)).get_json()["id"]  # escalated
    other = billing.defer(action("billing.refund", amount=5)).get_json()["id"]
    rita = reviewer(svc, "rita2")
    claim_batch(svc, rita)
    assert decide(svc, rita, asked, "approve").status == "approved"
    assert decide(svc, rita, other, "reject", "no").status == "rejected"
    with svc.db.write() as session:
        session.execute(
            update(Deferral)
            .where(Deferral.id == old)
            .values(created_at=utcnow() - timedelta(days=10))
        )

    html = logged_in(app, "rita").get("/agents/billing-bot").get_data(as_text=True)

    pact = html[html.index('id="pact-title"') :]
    assert "Refunds for the billing team" in pact and "olivia" in pact
    assert "<code>billing.*</code>, <code>crm.get_*</code>: any other tool is denied" in pact
    assert "no_refund_over_1000" in pact and "ask_for_credit" in pact and "reads_are_fine" in pact
    figures = _figures(html)
    # deferrals, scope violations, denied by policy, escalated, approval rate
    assert figures["7 days"][:4] == ["4", "1", "2", "1"]
    assert figures["30 days"][:4] == ["5", "2", "3", "1"]
    assert figures["7 days"][4].startswith("50%")


def test_the_policy_page_lists_every_rule_with_its_matches_for_admins_only(world):
    app, svc, billing, _ = world
    billing.defer(action("billing.refund", amount=5000))
    billing.defer(action("billing.refund", amount=5))
    billing.defer(action("crm.delete_contact"))
    assert logged_in(app, "rita").get("/policy").status_code == 403
    html = logged_in(app, "ada").get("/policy").get_data(as_text=True)
    row = html[html.index('id="rule-refund"') :]
    row = row[: row.index("</tr>")]
    assert "tool: matches billing.refund" in row and "+10" in row and "(scores only)" in row
    assert re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip().endswith("2 0, 1, 1")
    deny = html[html.index('id="rule-no_refund_over_1000"') :]
    deny = deny[: deny.index("</tr>")]
    assert (
        "deny" in deny
        and "billing-bot" in deny
        and "argument_over: under amount; over 1000" in deny
    )
    scope = html[html.index('id="rule-agent_scope"') :]
    assert re.sub(r"<[^>]+>", " ", scope[: scope.index("</tr>")]).split()[-3:] == ["0,", "0,", "1"]


def test_the_card_links_its_policy_version_to_the_policy_page(world):
    app, _, billing, _ = world
    d_id = billing.defer(action("billing.refund", amount=5)).get_json()["id"]
    page = logged_in(app, "ada").get(f"/deferrals/{d_id}").get_data(as_text=True)
    assert re.search(r'<a href="/policy\?version=sha256(%3A|:)[0-9a-f]+"', page)
