"""The session cookie and the CSRF token: each signed value's signature checked once a process.

A reviewer's browser sends the same session cookie, and the same CSRF token (the page's
`hx-headers`), with every request until the session changes. Checking a signature means
building itsdangerous' serializer and signer, deriving the key (an HMAC) and computing
the signature (another), then decoding the payload: for the cookie and the token together
about half of what a reviewer's request pays around its view beyond Flask's own dispatch
(bench/request_overhead.py). The answer for a given value under given keys never changes,
so each process remembers the values it has verified, with what they decoded to:

- the session cookie: its payload and the time it was signed. The age limit is checked
  again on every request, as itsdangerous checks it (whole seconds, never negative), and
  only payloads of plain values (strings, numbers, booleans) are remembered, so the
  session a request gets is its own copy that nothing can change through the memo.
- the CSRF token: the session's value it was signed from. The token must still match
  the request's session (compare_digest); only with WTF_CSRF_TIME_LIMIT unset (tokens
  valid for the session's life, review/web/auth.py) are tokens remembered, and only
  then is the pages' `csrf_token()` signed once a process for each session's value
  (flask-wtf signs a new one for every page: 67 -> 9 us a page, one held decision's
  answer among them).

Both memos are keyed on the keys that verified them (a new SECRET_KEY, or fallbacks,
verifies afresh), bounded (emptied when full), and hold nothing that is not in the
cookies the browsers send: a cookie or token is no more valid for being remembered.
Logging out, disabling a user or a new password still end a session at once: that is the
session token's check against the database (review/web/auth.py load_user), every request.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from flask import current_app, g, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect, generate_csrf, same_origin
from itsdangerous import BadSignature

MEMO_LIMIT = 4096  # distinct cookies (or tokens) a process remembers before starting over
PLAIN = (str, int, float, bool, type(None))


class AgentSession(SecureCookieSession):
    """An agent's request's session: empty whatever cookie came, and never saved.

    Agents sign every request under /api/v1/ and hold no session, so a cookie sent there
    carries no authority: neither the CSRF check (RememberingCSRF, below) nor flask-login's
    remember cookie (review/web/auth.py) has anything to protect or refresh on such a
    request, and both skip it."""


def agents_request() -> bool:
    """Whether the current request is an agent's (its session an AgentSession)."""
    return type(session._get_current_object()) is AgentSession


class PagesOnlySessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, for everything but the agents' API, each cookie's
    signature checked once a process.

    Agents sign every request and hold no session: reading and checking a session cookie
    (and building the signer that checks it) was a tenth of a status read's CPU. Under
    /api/v1/ a request's session is an AgentSession, whatever cookie came with it, and
    is never written back, so a browser's own cookie is left as it was. A request that
    sent no cookie gets an empty session without the signer being built, and an empty
    session nothing changed saves without its cookie's settings being looked up.
    """

    PREFIX = "/api/v1/"

    def __init__(self) -> None:
        # cookie -> (the keys that verified it, when it was signed, its payload)
        self._verified: dict[str, tuple[tuple, int, dict[str, Any]]] = {}

    def is_null_session(self, obj: object) -> bool:
        return isinstance(obj, AgentSession) or super().is_null_session(obj)  # never saved

    def open_session(self, app, request):
        if request.path.startswith(self.PREFIX):
            return AgentSession()
        value = request.cookies.get(self.get_cookie_name(app))
        if not value or not app.secret_key:
            # No cookie: an empty session, as Flask's would be, without building its signer.
            return self.session_class() if app.secret_key else None
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        max_age = int(app.permanent_session_lifetime.total_seconds())
        known = self._verified.get(value)
        if known is not None and known[0] == keys:
            age = int(time.time()) - known[1]  # as itsdangerous' TimestampSigner counts it
            if 0 <= age <= max_age:
                return self.session_class(known[2])
        try:
            data, signed_at = self.get_signing_serializer(app).loads(
                value, max_age=max_age, return_timestamp=True
            )
        except BadSignature:
            return self.session_class()
        if isinstance(data, dict) and all(isinstance(v, PLAIN) for v in data.values()):
            if len(self._verified) >= MEMO_LIMIT:
                self._verified.clear()
            self._verified[value] = (keys, int(signed_at.timestamp()), dict(data))
        return self.session_class(data)

    def save_session(self, app, session, response) -> None:
        if not session and not session.modified:  # as Flask's: only `Vary`, no cookie
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)


class RememberingCSRF(CSRFProtect):
    """flask-wtf's CSRF protection, each token's signature checked once a process.

    A token seen before is checked as flask-wtf checks it, less the signature: the
    session must hold the value the token was signed from. Anything else (a token not
    seen before, a missing one, a mismatch, a time limit set) goes to flask-wtf's own
    check, which answers 400 with its reason; a token it accepts is remembered.
    """

    def __init__(self, app=None) -> None:
        # token -> (the key that verified it, the session value it was signed from)
        self._verified: dict[str, tuple[Any, str]] = {}
        # (key, session value) -> the token signed for it: pages' csrf_token()
        self._signed: dict[tuple[Any, str], str] = {}
        super().__init__(app)

    def init_app(self, app) -> None:
        super().init_app(app)
        config = app.config

        def protect_unless_agents() -> None:
            """flask-wtf's check before every request, less an agent's: under /api/v1/
            no cookie counts (AgentSession), so there is no browser's authority to forge."""
            if agents_request():
                return
            if config["WTF_CSRF_ENABLED"] and config["WTF_CSRF_CHECK_DEFAULT"]:
                self.protect(apply_exemptions=True)

        hooks = app.before_request_funcs[None]  # flask-wtf's check, put in as its last
        (theirs,) = [i for i, hook in enumerate(hooks) if hook.__name__ == "csrf_protect"]
        hooks[theirs] = protect_unless_agents
        app.jinja_env.globals["csrf_token"] = self.signed_token
        app.context_processor(lambda: {"csrf_token": self.signed_token})

    def signed_token(self) -> str:
        """The pages' `csrf_token()`: flask-wtf's generate_csrf, signed once a process for
        each session value. Without a time limit a token's signing time is never read, so
        the token signed first for a session serves every page of it (a page's
        hx-headers token already serves every request the page makes)."""
        config = current_app.config
        field = config["WTF_CSRF_FIELD_NAME"]
        key = config.get("WTF_CSRF_SECRET_KEY") or current_app.secret_key
        if config.get("WTF_CSRF_TIME_LIMIT") is not None or not key:
            return generate_csrf()
        held = session.get(field)
        token = self._signed.get((key, held)) if isinstance(held, str) else None
        if token is None:
            token = generate_csrf()  # makes the session's value when it has none
            held = session.get(field)
            if isinstance(held, str):
                if len(self._signed) >= MEMO_LIMIT:
                    self._signed.clear()
                self._signed[(key, held)] = token
        return token

    def protect(self, apply_exemptions: bool = False) -> None:
        if apply_exemptions and (not request.endpoint or self._is_exempt()):
            return
        config = current_app.config
        if request.method not in config["WTF_CSRF_METHODS"]:
            return
        token = self._get_csrf_token()
        field = config["WTF_CSRF_FIELD_NAME"]
        key = config.get("WTF_CSRF_SECRET_KEY") or current_app.secret_key
        remembering = config.get("WTF_CSRF_TIME_LIMIT") is None and bool(token) and bool(key)
        known = self._verified.get(token) if remembering else None
        held = session.get(field)
        if (
            known is None
            or known[0] != key
            or not isinstance(held, str)
            or not hmac.compare_digest(held, known[1])
        ):
            super().protect()  # flask-wtf's whole check: a 400 with its reason, or valid
            if remembering and isinstance(session.get(field), str):
                if len(self._verified) >= MEMO_LIMIT:
                    self._verified.clear()
                self._verified[token] = (key, session[field])
            return
        if request.is_secure and config["WTF_CSRF_SSL_STRICT"]:  # as flask-wtf's protect
            if not request.referrer:
                self._error_response("The referrer header is missing.")
            if not same_origin(request.referrer, f"https://{request.host}/"):
                self._error_response("The referrer does not match the host.")
        g.csrf_valid = True
