"""The editor's pages (review/web/edit_pages.py) without a browser: who gets the editor,
how each form is read, and that a refused edit answers the editor with what was typed."""

from __future__ import annotations

import json

import pytest

from tests.helpers import logged_in, refund


@pytest.fixture
def held(app, agent, people):
    """A refund that rita holds, and rita at the pages."""
    d_id = agent.defer(refund()).get_json()["id"]
    rita = logged_in(app, "rita")
    assert rita.post("/batch/start").status_code == 303  # no JS: on to GET /batch
    return d_id, rita


def status(agent, d_id):
    return agent.get(f"/api/v1/deferrals/{d_id}").get_json()


def test_only_the_holder_gets_the_editor(app, agent, held):
    d_id, rita = held
    batch = rita.get("/batch").get_data(as_text=True)  # the editor comes when opened
    assert "Edit arguments" in batch and 'aria-label="Edit as JSON"' not in batch
    assert f'hx-get="/deferrals/{d_id}/edit"' in batch
    editor = rita.get(f"/deferrals/{d_id}/edit", headers={"HX-Request": "true"})
    assert 'aria-label="Edit as JSON"' in editor.get_data(as_text=True)
    assert 'name="next" value="/batch"' in editor.get_data(as_text=True)
    assert 'aria-label="Edit each field"' in rita.get(f"/deferrals/{d_id}").get_data(as_text=True)
    sam = logged_in(app, "sam")
    assert "Edit as JSON" not in sam.get(f"/deferrals/{d_id}").get_data(as_text=True)
    gone = sam.get(f"/deferrals/{d_id}/edit", headers={"HX-Request": "true"})
    assert "You no longer hold this item." in gone.get_data(as_text=True)
    refused = sam.post(f"/deferrals/{d_id}/edit/approve", {"source": "json", "args_json": "{}"})
    assert refused.status_code == 302
    assert status(agent, d_id)["status"] == "in_review"


def test_fields_are_read_back_as_the_types_they_had(agent, held):
    d_id, rita = held
    answer = rita.post(
        f"/deferrals/{d_id}/edit/approve",
        {"source": "fields", "arg:invoice": "INV-2", "arg:amount": "12.5", "next": "/batch"},
    )
    assert answer.status_code == 302 and answer.headers["Location"] == "/batch"
    assert status(agent, d_id)["action"]["args"] == {"invoice": "INV-2", "amount": 12.5}


def test_a_field_that_is_not_a_number_is_refused_with_the_typed_values_kept(agent, held):
    d_id, rita = held
    answer = rita.post(
        f"/deferrals/{d_id}/edit/approve",
        {"source": "fields", "arg:invoice": "INV-9", "arg:amount": "lots"},
        htmx=True,
    )
    html = answer.get_data(as_text=True)
    assert answer.headers["HX-Retarget"] == f"#edit-{d_id}"
    assert "amount must be a number" in html and 'value="lots"' in html and "INV-9" in html
    assert status(agent, d_id)["status"] == "in_review"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('{"amount": 1,}', "not valid JSON"),
        ('{"amount": NaN}', "not valid JSON"),
        ('{"amount": 1e400}', "number outside"),
        ("[1, 2]", "must be a JSON object"),
        ("[" * 40 + "]" * 40, "nest deeper than 30"),
    ],
)
def test_json_the_api_would_refuse_is_refused_and_the_text_kept(agent, held, text, said):
    d_id, rita = held
    answer = rita.post(
        f"/deferrals/{d_id}/edit/approve", {"source": "json", "args_json": text}, htmx=True
    )
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200 and said in html, html[:2000]
    assert 'role="alert"' in html and " open" in html
    assert status(agent, d_id)["status"] == "in_review"


def test_a_preview_answers_the_new_diff_and_a_strict_error(agent, held):
    d_id, rita = held
    shown = rita.post(
        f"/deferrals/{d_id}/edit/preview",
        {"source": "json", "args_json": '{"invoice": "INV-1", "amount": 5}'},
        htmx=True,
    ).get_data(as_text=True)
    assert "New diff" in shown and "/amount" in shown and "your approval is enough" in shown
    bad = rita.post(
        f"/deferrals/{d_id}/edit/preview", {"source": "json", "args_json": "{"}, htmx=True
    ).get_data(as_text=True)
    assert "not valid JSON" in bad
    assert status(agent, d_id)["action"]["args"]["amount"] == 740  # a preview writes nothing


def test_hidden_characters_reach_the_json_editor_escaped_and_no_field_input():
    from review.web.edit_pages import _as_text, flat_fields

    args = {"path": "\u202efdp.exe", "note": "café", "tag": "a\U000e0041b"}
    text = _as_text(args)
    assert "\u202e" not in text and "\\u202e" in text and "café" in text
    assert json.loads(text) == args  # the same arguments once parsed
    assert flat_fields(args) is None  # an input would show the override working
    assert flat_fields({"note": "café", "amount": 3}) is not None
