"""Pages that show claimed items are never served from the browser's cache."""

from __future__ import annotations

from tests.helpers import logged_in


def test_the_queue_the_batch_and_an_item_page_are_sent_with_no_store(app, agent, people):
    d_id = agent.defer().get_json()["id"]
    rita = logged_in(app, "rita")
    started = rita.post("/batch/start", {"answer": "page"})  # the batch page itself
    assert started.headers["Cache-Control"] == "no-store"
    for path in ("/queue", "/batch", f"/deferrals/{d_id}", f"/deferrals/{d_id}/callbacks"):
        response = rita.get(path)
        assert response.status_code == 200, path
        assert response.headers["Cache-Control"] == "no-store", path
    card = rita.post(f"/batch/{d_id}/reject", {"reason": "no"}, htmx=True)
    assert card.headers["Cache-Control"] == "no-store"
