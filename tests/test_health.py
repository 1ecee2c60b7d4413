"""GET /healthz: 200 {"status": "ok"} when database and Redis answer, 503 otherwise."""


def test_healthz_is_ok_when_database_and_redis_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_is_503_when_redis_is_down(make_app):
    app = make_app(redis_url="redis://127.0.0.1:1/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"database": "ok", "redis": "down"}


def test_healthz_is_503_when_the_database_is_down(make_app, tmp_path):
    app = make_app(database_url=f"sqlite:///{tmp_path}/missing-dir/none.db")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"] == "down"


def test_the_home_page_says_what_is_running_and_links_the_health_check(client, agent):
    agent.defer()
    page = client.get("/").get_data(as_text=True)
    assert 'href="/healthz"' in page and "What is running" in page
    assert "Refund $740" not in page  # what waits is for people who logged in
    assert 'href="/login"' in page


def test_the_home_page_shows_what_waits_to_people_logged_in(app, agent, people):
    from tests.helpers import logged_in

    agent.defer()
    rita = logged_in(app, "rita")
    assert "Refund $740 to customer C-88319" in rita.get("/").get_data(as_text=True)
    fragment = rita.get("/", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section class="panel" id="waiting"')
