"""Fuzzing intake: random JSON, random headers, random bytes, and schema-valid requests.

Whatever arrives: never a 500, never a partial row (every deferral has its two audit
events, every 202 has its deferral), and the audit chain still verifies.
"""

import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from review.audit.verify import verify_chain
from review.models import AuditEvent, Deferral

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
header_text = st.text(max_size=60) | st.sampled_from(["", "v1,", "v1,AAAA", "1700000000", "-1"])


@pytest.fixture
def agent(make_app, make_agent):
    """Quotas off: the fuzz sends far more than an agent's rate."""
    app = make_app(agent_rate=0, agent_max_pending=0)
    return make_agent().on(app)


@pytest.fixture
def seen(svc):
    """Statuses seen; after the test, the database must agree with them."""
    statuses = Counter()
    yield statuses
    assert statuses[500] == 0
    with svc.db.read() as session:
        deferrals = session.scalar(select(func.count()).select_from(Deferral))
        assert deferrals == statuses[202]
        per_deferral = session.execute(
            select(AuditEvent.deferral_id, func.count())
            .where(AuditEvent.deferral_id.is_not(None))
            .group_by(AuditEvent.deferral_id)
        ).all()
        assert all(n == 2 for _, n in per_deferral) and len(per_deferral) == deferrals
        assert verify_chain(session).ok


@FUZZ
@given(body=json_values)
def test_random_json_is_answered_without_a_500(agent, seen, body):
    response = agent.defer(json.dumps(body).encode())
    seen[response.status_code] += 1
    assert response.status_code in (400, 422), response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] in ("malformed_json", "invalid_request")


@FUZZ
@given(raw=st.binary(max_size=300))
def test_random_bytes_are_answered_without_a_500(agent, seen, raw):
    response = agent.defer(raw)
    seen[response.status_code] += 1
    assert response.status_code in (400, 422)


@FUZZ
@given(
    webhook_id=header_text, stamp=header_text, signature=header_text, body=st.binary(max_size=100)
)
def test_random_headers_are_answered_401_without_a_500(
    agent, client, seen, webhook_id, stamp, signature, body
):
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": stamp,
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }
    safe = {k: v for k, v in headers.items() if "\n" not in v and "\r" not in v}
    response = client.post(f"/api/v1/agents/{agent.slug}/deferrals", data=body, headers=safe)
    seen[response.status_code] += 1
    assert response.status_code == 401


short = st.text(min_size=1, max_size=40)
deferral_bodies = st.fixed_dictionaries(
    {
        "action": st.fixed_dictionaries(
            {"tool": short, "args": st.dictionaries(st.text(max_size=10), json_values, max_size=4)}
        ),
        "summary": short,
        "on_behalf_of": st.fixed_dictionaries({"id": short}, optional={"display_name": short}),
    },
    optional={
        "rationale": st.text(max_size=200),
        "before": json_values,
        "after": json_values,
        "resource": st.fixed_dictionaries({"type": short, "id": short}),
        "risk": st.fixed_dictionaries(
            {"score": st.integers(0, 100)}, optional={"reasons": st.lists(short, max_size=3)}
        ),
        "trace": st.fixed_dictionaries(
            {},
            optional={
                "id": short,
                "url": st.sampled_from(["https://t.example.com/x", "http://127.0.0.1/t?q=1#f"]),
            },
        ),
        "expires_in": st.integers(60, 604800),
        "labels": st.dictionaries(
            st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=5
        ),
    },
)


@FUZZ
@given(body=deferral_bodies)
def test_schema_valid_requests_are_accepted_or_refused_cleanly(agent, seen, body):
    response = agent.defer(json.dumps(body).encode())
    seen[response.status_code] += 1
    assert response.status_code in (202, 422), response.get_data(as_text=True)
    if response.status_code == 422:  # only what these strategies do not avoid: NUL, huge numbers
        messages = " ".join(d["message"] for d in response.get_json()["error"]["details"])
        assert "NUL" in messages or "number outside" in messages
