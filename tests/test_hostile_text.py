"""Hostile agent text: large texts cost a bounded diff once, at intake; the pages never
diff; the diff never compiles Python; hidden characters are shown, not obeyed.

(Countersign issue 13, findings 2, 5 and 10.)
"""

from __future__ import annotations

import ast
import builtins
import difflib
import json
import random
import threading
import time

import pytest
from markupsafe import Markup, escape
from sqlalchemy import select, update

from review.intake import text_diff
from review.intake.diffing import compute_diff
from review.models import Deferral
from review.web.filters import pretty, reveal
from tests.helpers import logged_in, refund

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "\u202efdp.exe" reads "exe.pdf"
MARKER = '<span class="hidden-char" title="U+202E RIGHT-TO-LEFT OVERRIDE">⟨U+202E⟩</span>'


def random_lines(seed: int, count: int) -> str:
    """Short lines drawn from 150 values: the shape that held deepdiff's difflib 135 s."""
    r = random.Random(seed)
    return "\n".join(f"{r.randrange(150):03d}" for _ in range(count))


def two_texts_of_short_repeated_lines():
    return {"doc": random_lines(1, 96_000)}, {"doc": random_lines(2, 96_000)}


def two_hundred_texts_each_diffed():
    r = random.Random(3)
    lines = text_diff.MAX_UNITS - 20  # each small enough to be diffed
    texts = [
        {f"t{i}": "\n".join(r.choice("abcdefgh") for _ in range(lines)) for i in range(200)}
        for _ in range(2)
    ]
    return texts[0], texts[1]


def one_line_of_words_reversed():
    words = [f"w{i % 997}" for i in range(80_000)]
    return {"doc": " ".join(words)}, {"doc": " ".join(words[::-1])}


ADVERSARIAL = [
    two_texts_of_short_repeated_lines,
    two_hundred_texts_each_diffed,
    one_line_of_words_reversed,
]


def defer(agent, before, after, **changes):
    raw = json.dumps(refund(before=before, after=after, **changes)).encode()
    assert len(raw) <= 1024 * 1024
    response = agent.defer(raw)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize("shape", ADVERSARIAL, ids=lambda shape: shape.__name__)
def test_it_takes_a_1_mib_adversarial_body_from_intake_to_decision_in_well_under_a_second(
    app, svc, agent, people, shape
):
    before, after = shape()
    rita = logged_in(app, "rita")
    started = time.process_time()
    created = defer(agent, before, after)
    assert rita.post("/batch/start").status_code == 303
    assert rita.get("/batch").status_code == 200
    response = rita.post(f"/batch/{created['id']}/reject", {"reason": "too big"}, htmx=True)
    assert response.status_code == 200
    spent = time.process_time() - started
    # Generous, for a loaded CI machine: measured at 0.15 to 0.3 s. deepdiff's difflib
    # held the first shape for over two minutes, uninterruptibly.
    assert spent < 1.5, f"{shape.__name__}: {spent:.2f} s of CPU"
    for change in created["diff"]["changes"]:
        assert len(change["lines"]) <= text_diff.MAX_SHOWN_LINES


def test_a_small_edit_in_a_large_text_is_one_short_hunk():
    old = "\n".join(f"line {i}" for i in range(50_000))
    new = old.replace("line 25000\n", "line twenty-five thousand\n")
    (change,) = compute_diff({"doc": old}, {"doc": new}, max_changes=200, max_ms=5000)["changes"]
    assert change["lines"] == [
        ["@", "@@ -24999,5 +24999,5 @@"],
        [" ", "line 24998"],
        [" ", "line 24999"],
        ["-", "line 25000"],
        ["+", "line twenty-five thousand"],
        [" ", "line 25001"],
        [" ", "line 25002"],
    ]
    assert change["lines_truncated"] is False and change["lines_note"] is None
    assert change["old"] == old and change["new"] == new  # the values stay as sent


def test_a_text_too_different_to_diff_is_stored_as_a_summary_that_says_so():
    old, new = random_lines(1, 20_000), random_lines(2, 20_000)
    (change,) = compute_diff({"doc": old}, {"doc": new}, max_changes=200, max_ms=5000)["changes"]
    assert change["lines"] == [] and change["lines_truncated"] is True
    assert (
        change["lines_note"] == "20000 lines before and 20000 after differ (from line 1): "
        "too many to show"
    )


def test_a_text_diff_past_the_deadline_is_a_summary_not_a_wait():
    old, new = random_lines(1, 400), random_lines(2, 400)
    (change,) = compute_diff({"doc": old}, {"doc": new}, max_changes=200, max_ms=5000)["changes"]
    assert change["lines"]  # within the time, it is diffed
    late = text_diff.line_changes(old, new, deadline=time.monotonic() - 1)
    assert late["lines"] == [] and late["lines_truncated"] is True
    assert "time budget" in late["lines_note"]


def test_a_text_diff_that_would_run_long_is_cut_at_the_deadline():
    # About a second of difflib (cubic on repeated lines, under autojunk's 200 lines).
    old, new = "\n".join(["x"] * 500), "\n".join(["x", "y"] * 99 + ["z"])
    started = time.monotonic()
    cut = text_diff.line_changes(old, new, deadline=time.monotonic() + 0.05)
    assert time.monotonic() - started < 0.5
    assert cut["lines"] == [] and cut["lines_truncated"] is True
    assert cut["lines_note"] == (
        "499 lines before and 198 after differ (from line 2): "
        "too slow to compare within the time budget"
    )


def test_the_stored_line_diff_is_bounded_in_lines_and_characters():
    old = "\n".join(f"{i} " + "x" * 3000 for i in range(450))
    new = "\n".join(f"{i} " + "y" * 3000 for i in range(450))
    (change,) = compute_diff({"doc": old}, {"doc": new}, max_changes=200, max_ms=5000)["changes"]
    assert len(change["lines"]) <= text_diff.MAX_SHOWN_LINES
    assert sum(len(text) for _, text in change["lines"]) <= text_diff.MAX_SHOWN_CHARS + 1100
    assert all(len(text) <= text_diff.MAX_LINE_CHARS + 40 for _, text in change["lines"])
    assert change["lines_truncated"] is True
    assert "showing the first" in change["lines_note"] and "are cut" in change["lines_note"]


def test_one_long_line_is_diffed_word_by_word():
    old = "please refund the duplicate charge on invoice INV-1 to the card of the customer today"
    assert len(old) > text_diff.LONG_TEXT_CHARS
    new = old.replace("INV-1", "INV-7").replace("today", "at once")
    (change,) = compute_diff({"s": old}, {"s": new}, max_changes=200, max_ms=5000)["changes"]
    assert ["-", "INV-1"] in change["lines"] and ["+", "INV-7"] in change["lines"]
    assert ["-", "today"] in change["lines"] and ["+", "at"] in change["lines"]


def test_short_values_have_no_line_diff():
    (change,) = compute_diff({"s": "a"}, {"s": "b"}, max_changes=200, max_ms=5000)["changes"]
    assert change == {"op": "changed", "path": "/s", "old": "a", "new": "b"}


def test_the_batch_page_shows_the_stored_lines_and_never_diffs(
    app, svc, agent, people, monkeypatch
):
    old = "\n".join(f"step {i}" for i in range(300))
    created = defer(agent, {"script": old}, {"script": old.replace("step 150", "rm -rf /")})

    def no_diffing_here(*args, **kwargs):
        raise AssertionError("a page computed a diff")

    for name in ("find_longest_match", "get_matching_blocks", "get_opcodes"):
        monkeypatch.setattr(difflib.SequenceMatcher, name, no_diffing_here)
    for name in ("unified_diff", "ndiff", "context_diff"):
        monkeypatch.setattr(difflib, name, no_diffing_here)
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    page = rita.get("/batch").get_data(as_text=True)
    assert '<span class="ld ld-add">+rm -rf /' in page
    assert '<span class="ld ld-del">-step 150' in page
    item = rita.get(f"/deferrals/{created['id']}").get_data(as_text=True)
    assert '<span class="ld ld-add">+rm -rf /' in item


def test_a_diff_stored_before_line_diffs_shows_old_and_new_as_they_are(app, svc, agent, people):
    created = defer(agent, {"note": "a\nb"}, {"note": "a\nc"})
    old_form = {
        "changes": [{"op": "changed", "path": "/note", "old": "a\nb", "new": "a\nc"}],
        "count": 1,
        "truncated": False,
        "note": None,
    }
    with svc.db.write() as session:
        session.execute(update(Deferral).where(Deferral.id == created["id"]).values(diff=old_form))
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    page = rita.get("/batch").get_data(as_text=True)
    assert '<pre class="json">&#34;a\\nb&#34;</pre>' in page
    assert '<pre class="json">&#34;a\\nc&#34;</pre>' in page
    assert 'class="linediff"' not in page


def mixed_pair():
    before = {
        "rows": [{"id": i, "tags": ["a", "b"], "n": i} for i in range(60)],
        "text": "\n".join(f"line {i}" for i in range(200)),
        "flag": 1,
        "gone": {"x": [1, 2, 3]},
        "deep": [[[[{"k": [0, 1, 2]}]]]],
    }
    after = {
        "rows": [{"id": i, "tags": ["a", "c"], "n": -i} for i in range(60)][::-1],
        "text": "\n".join(f"line {i}" for i in range(1, 201)),
        "flag": True,
        "new": [None, 1.5],
        "deep": [[[[{"k": [0, 2]}]]]],
    }
    return before, after


def test_the_diff_never_compiles_python(app, agent, monkeypatch):
    """deepdiff checked list indices with ast.literal_eval, i.e. compile(), which CPython
    3.11 can break when threads compile at once (a 500 under load on PostgreSQL)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the diff compiled Python")

    monkeypatch.setattr(ast, "literal_eval", refuse)
    monkeypatch.setattr(builtins, "compile", refuse)
    before, after = mixed_pair()
    d = compute_diff(before, after, max_changes=200, max_ms=5000)
    assert d["count"] > 100 and any("lines" in c for c in d["changes"])
    assert {"/deep/0/0/0/0/k/1", "/deep/0/0/0/0/k/2", "/flag", "/gone", "/new"} <= {
        c["path"] for c in d["changes"]
    }
    # The whole intake too: schema, policy, diff, priority, the write and the audit chain.
    response = agent.defer(refund(before=before, after=after))
    assert response.status_code == 202, response.get_data(as_text=True)


def test_many_threads_diff_at_once_without_error_and_agree():
    before, after = mixed_pair()
    expected = compute_diff(before, after, max_changes=200, max_ms=60_000)
    stop = time.monotonic() + 3
    errors: list[BaseException] = []
    runs = [0] * 8

    def diff_until_stopped(n: int) -> None:
        try:
            while time.monotonic() < stop:
                assert compute_diff(before, after, max_changes=200, max_ms=60_000) == expected
                runs[n] += 1
        except BaseException as exc:  # noqa: BLE001 - any error at all fails the test
            errors.append(exc)

    threads = [threading.Thread(target=diff_until_stopped, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and all(runs), (errors[:1], runs)


def test_intake_under_concurrent_requests_never_fails(make_app, make_agent):
    app = make_app(agent_rate=0)
    base = make_agent()
    before, after = mixed_pair()
    failures: list[str] = []

    def post_some(n: int) -> None:
        from tests.helpers import AgentClient

        client = AgentClient(app.test_client(), base.slug, base.secret)
        for i in range(6):
            body = refund(before=before, after=after, summary=f"thread {n} item {i}")
            response = client.defer(body)
            if response.status_code != 202:
                failures.append(f"{response.status_code} {response.get_data(as_text=True)}")

    threads = [threading.Thread(target=post_some, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []


@pytest.mark.parametrize(
    "char,code",
    [
        ("\u202e", "U+202E"),  # right-to-left override
        ("\u202a", "U+202A"),
        ("\u2066", "U+2066"),  # left-to-right isolate
        ("\u2069", "U+2069"),
        ("\u200e", "U+200E"),  # left-to-right mark
        ("\u200f", "U+200F"),
        ("\u061c", "U+061C"),  # Arabic letter mark
        ("\u200b", "U+200B"),  # zero-width space
        ("\u200d", "U+200D"),  # zero-width joiner
        ("\u2060", "U+2060"),  # word joiner
        ("\ufeff", "U+FEFF"),  # zero-width no-break space
        ("\u00ad", "U+00AD"),  # soft hyphen (another format character)
        ("\U000e0041", "U+E0041"),  # a tag character
        ("\x07", "U+0007"),  # C0 control
        ("\x1b", "U+001B"),
        ("\r", "U+000D"),  # a lone carriage return
        ("\x85", "U+0085"),  # C1 control
        ("\u2028", "U+2028"),  # line separator
        ("\u3164", "U+3164"),  # Hangul filler, a blank "letter"
    ],
)
def test_reveal_marks_each_hidden_character_visibly(char, code):
    shown = reveal(f"a{char}b")
    assert isinstance(shown, Markup)
    assert char not in shown
    assert f'<span class="hidden-char" title="{code} ' in shown and f"⟨{code}⟩</span>" in shown
    assert shown.startswith("a<span") and shown.endswith("</span>b")


def test_reveal_escapes_first_and_leaves_ordinary_text_alone():
    shown = reveal(f'<b title="x">{RLO}fdp.exe</b> & é 日本\n\tx\r\n')
    assert isinstance(shown, Markup)
    assert str(shown) == (
        f"&lt;b title=&#34;x&#34;&gt;{MARKER}fdp.exe&lt;/b&gt; &amp; é 日本\n\tx\r\n"
    )
    # Agent text that looks like our marker is only text.
    assert str(reveal(MARKER)) == str(escape(MARKER))
    assert str(reveal(None)) == "" and str(reveal(740)) == "740"
    assert MARKER in pretty({"path": f"{RLO}fdp.exe"})


def test_every_page_with_agent_text_shows_hidden_characters_marked(app, svc, agent, people):
    spoof = f"{RLO}fdp.exe"
    created = defer(
        agent,
        {"path": "report.pdf", "text": "a\nb"},
        {"path": spoof, "text": f"a\n{spoof}"},
        summary=f"Attach {spoof}",
        rationale=f"the customer asked for {spoof}",
        action={"tool": "files.attach", "args": {"path": spoof}},
        on_behalf_of={"id": f"{spoof}@example.com", "display_name": f"Eve {spoof}"},
        labels={"file": spoof},
        resource={"type": "file", "id": spoof},
        trace={"id": spoof},
    )
    d_id = created["id"]
    rita = logged_in(app, "rita")
    queue = rita.get("/queue").get_data(as_text=True)
    rita.post("/batch/start")
    pages = {
        "queue": queue,
        "batch": rita.get("/batch").get_data(as_text=True),
        "item": rita.get(f"/deferrals/{d_id}").get_data(as_text=True),
    }
    ada = logged_in(app, "ada")
    pages["agent"] = ada.get(f"/agents/{agent.slug}").get_data(as_text=True)
    audrey = logged_in(app, "audrey")
    pages["evidence"] = audrey.get(f"/audit/deferrals/{d_id}").get_data(as_text=True)
    pages["audit log"] = audrey.get("/audit").get_data(as_text=True)
    for name, page in pages.items():
        assert RLO not in page, f"a raw U+202E on the {name} page"
        assert MARKER + "fdp.exe" in page, name
    batch = pages["batch"]
    assert batch.count(MARKER) >= 10  # summary, principal, args, labels, target, trace, diff
    assert f"Attach {MARKER}fdp.exe" in batch
    assert f"the customer asked for {MARKER}fdp.exe" in batch


def test_the_stored_diff_keeps_hidden_characters_as_sent(agent, svc):
    created = defer(agent, {"p": "a"}, {"p": f"{RLO}fdp.exe"})
    with svc.db.read() as session:
        stored = session.scalar(select(Deferral.diff).where(Deferral.id == created["id"]))
    assert stored["changes"][0]["new"] == f"{RLO}fdp.exe"  # shown marked, stored as sent
