"""The decision's answers in a batch (review/web/batch_pages.py `_ended_card`,
`_held_card`): their one template of head and facts (review/card/_compact.html) shows
what the card's own partials show for a decided card, whatever the deferral carries."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import render_template, render_template_string

from review.models import utcnow
from review.reviewing.prepared_decisions import read_for_decision
from review.web.reviewer_pages import HeldCard
from tests.helpers import refund

# The answers as they were, through the partials every other card renders.
_THROUGH_THE_PARTIALS = """\
{% set on_item_page = False %}{% set live = False %}{% set approvals = {} %}
<article class="card decided" id="card-{{ d.id }}" tabindex="-1" data-id="{{ d.id }}"
         aria-labelledby="summary-{{ d.id }}" data-batch data-outcome="{{ d.status }}">
  {% include "review/card/_head.html" %}
  <div class="card-body"><div class="card-main">{% include "review/card/_facts.html" %}</div></div>
  <footer class="decide">
    <p class="status-line status-{{ notice_kind }}" id="status-{{ d.id }}"
       role="status">{{ notice }}</p>
  </footer>
</article>
<span id="batch-left" hx-swap-oob="innerHTML">{{ left }}</span>
<span id="decision-status" hx-swap-oob="innerHTML"><span
  class="status-{{ notice_kind }}">{{ notice }} · {{ d.summary|reveal }}</span></span>
"""
_HELD_THROUGH_THE_PARTIALS = """\
{% set on_item_page = False %}{% set in_batch = True %}
{% set live = False %}{% set approvals = {} %}
<article class="card decided" id="card-{{ d.id }}" tabindex="-1" data-id="{{ d.id }}"
         aria-labelledby="summary-{{ d.id }}" data-batch
         data-outcome="{{ waiting.outcome }}" data-held>
  {% include "review/card/_head.html" %}
  <div class="card-body"><div class="card-main">{% include "review/card/_facts.html" %}</div></div>
  {% include "review/card/_bar.html" %}
</article>
<span id="batch-left" hx-swap-oob="innerHTML">{{ left }}</span>
<span id="decision-status" hx-swap-oob="innerHTML"><span
  class="status-{{ notice_kind }}">{{ notice }} · {{ d.summary|reveal }}</span></span>
"""

VARIANTS = {
    "plain": {},
    "decided": {
        "status": "approved",
        "decided_by": ["rita"],
        "decision_reason": "fine <b>by</b> me",
    },
    "bare": {"labels": {}, "trace_id": None, "trace_url": None, "resource_type": None},
    "trace id only": {"trace_url": "javascript:alert(1)", "trace_id": "t<1>"},
    "verified": {"principal_verified": {"issuer": "https://idp", "groups": ["ops", "<x>"]}},
    "verified, no groups": {"principal_verified": {"issuer": "https://idp", "groups": []}},
    "routed": {"route_group": "finance", "required_approvals": 2},
    "snoozed": {
        "set_aside": {"kind": "snooze", "by": "rita", "reason": "later"},
        "not_before": utcnow() + timedelta(hours=1),
    },
    "handed over": {"set_aside": {"kind": "hand_over", "by": "rita", "to_group": "ops"}},
    "agent text": {
        "summary": "Refund \u202e$740 <script>",
        "tool": "x\u200by",
        "labels": {"te\u200bam": "<b>"},
    },
}


def _same(a: str, b: str) -> bool:
    def squeezed(html: str) -> str:
        return re.sub(r"\s+", " ", re.sub(r">\s+<", "><", html)).strip()

    return squeezed(a) == squeezed(b)


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_the_answer_cards_show_what_the_card_partials_show(app, svc, agent, variant):
    d_id = agent.defer(refund(resource={"type": "invoice", "id": "INV-1"})).get_json()["id"]
    d = read_for_decision(svc, d_id)
    d.__dict__.update(VARIANTS[variant])
    shown = {"d": d, "notice": "Approved.", "notice_kind": "ok", "left": 3}
    held = {**shown, "waiting": HeldCard("approved", 4200)}
    with app.test_request_context("/batch"):
        ended = render_template("review/_decided_card.html", **shown)
        assert _same(ended, render_template_string(_THROUGH_THE_PARTIALS, **shown))
        waiting = render_template("review/_held_card.html", **held)
        assert _same(waiting, render_template_string(_HELD_THROUGH_THE_PARTIALS, **held))
