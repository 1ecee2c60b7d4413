"""create_app: settings, services, blueprints and commands, flaskr-style."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from review.bundled import bundled
from review.services import Services
from review.settings import load_settings


class CountersignFlask(Flask):
    """Flask, asking once per function whether it is a coroutine function.

    Flask asks `inspect.iscoroutinefunction` of every hook and view on every request
    (ensure_sync); for the polled status read that was a twentieth of its CPU. The
    functions are the app's own, registered at start-up, so the answer never changes.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._sync_versions: dict[Any, Any] = {}

    MEMO_LIMIT = 1024  # a function made per call (copy_current_request_context) must not pile up

    def ensure_sync(self, func: Any) -> Any:
        try:
            return self._sync_versions[func]
        except KeyError:
            if len(self._sync_versions) >= self.MEMO_LIMIT:
                self._sync_versions.clear()
            sync = self._sync_versions[func] = super().ensure_sync(func)
            return sync
        except TypeError:  # an unhashable callable: ask every time, as Flask does
            return super().ensure_sync(func)


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. `overrides` (tests) win over the environment, which wins over config/."""
    settings = load_settings(overrides=overrides)
    settings.instance_path.mkdir(parents=True, exist_ok=True)
    app = CountersignFlask(
        __name__,
        instance_path=settings.instance_dir,
        static_folder=str(bundled("static")),
        template_folder=str(bundled("templates")),
    )
    app.config.update(
        SECRET_KEY=settings.secret_key,
        # Flask signs new sessions with SECRET_KEY and still accepts the older keys' ones.
        SECRET_KEY_FALLBACKS=list(settings.secret_key_fallbacks),
        MAX_CONTENT_LENGTH=None,  # /api/v1 enforces its own limit with a JSON 413
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    if settings.trusted_proxies:  # the client's address and scheme, as the proxies saw them
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    services = Services.build(settings)
    app.extensions["countersign"] = services
    _configure_logging(settings.log_format)

    from review import cli
    from review.api.views import bp as api_bp
    from review.doors.aap.views import bp as aap_bp
    from review.web import (
        agent_pages,
        agent_registry_pages,  # noqa: F401  (its routes join agent_pages.bp)
        audit_pages,
        auth,
        batch_pages,  # noqa: F401  (its routes join reviewer_pages.bp)
        edit_pages,
        filters,
        health,
        home,
        live_pages,
        metrics_view,
        notification_pages,
        oversight_pages,
        people_pages,
        policy_pages,
        preferences,
        receipt_keys,
        request_ids,
        reviewer_pages,
        set_aside_pages,  # noqa: F401  (its routes join reviewer_pages.bp)
        slack_interactions,
        sso,
    )

    auth.init_app(app, services)
    sso.init_app(app, services)  # Log in with SSO, when the OIDC settings are there
    auth.csrf.exempt(api_bp)  # agents sign their requests; there is no browser session
    auth.csrf.exempt(aap_bp)  # AAP clients send bearer tokens; there is no browser session
    auth.csrf.exempt(slack_interactions.bp)  # Slack signs its requests; no browser session
    filters.init_app(app)
    request_ids.init_app(app)
    app.register_blueprint(api_bp)
    app.register_blueprint(aap_bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics_view.bp)
    app.register_blueprint(receipt_keys.bp)
    app.register_blueprint(home.bp)
    app.register_blueprint(reviewer_pages.bp)
    app.register_blueprint(live_pages.bp)
    app.register_blueprint(agent_pages.bp)
    app.register_blueprint(audit_pages.bp)
    app.register_blueprint(people_pages.bp)
    app.register_blueprint(oversight_pages.bp)
    edit_pages.init_app(app)
    policy_pages.init_app(app)
    app.register_blueprint(preferences.bp)
    app.register_blueprint(notification_pages.bp)
    app.register_blueprint(slack_interactions.bp)
    cli.init_app(app)
    _api_errors_are_json(app)
    return app


def _configure_logging(log_format: str) -> None:
    """One stderr handler on the root logger, text or JSON lines, with request ids.

    Like logging.basicConfig, it leaves alone logging that someone else has set up
    (a root logger that already has handlers that are not ours).
    """
    from review.web.request_ids import HANDLER_NAME, configure_handler

    root = logging.getLogger()
    ours = [h for h in root.handlers if h.get_name() == HANDLER_NAME]
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.set_name(HANDLER_NAME)
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        ours = [handler]
    for handler in ours:
        configure_handler(handler, log_format)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # every callback is logged by us


def _api_errors_are_json(app: Flask) -> None:
    """Routing errors (unknown path, wrong method) under /api/ answer in the API's shape;
    elsewhere they are pages (review/web/error_pages.py)."""
    from review.web.error_pages import error_page

    @app.errorhandler(HTTPException)
    def on_http_error(error: HTTPException):
        if not request.path.startswith("/api/"):
            return error_page(error)  # a page in the site's layout
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.code or 0, "http_error")
        response = jsonify({"error": {"code": code, "message": error.description}})
        response.status_code = error.code or 500
        return response
