"""Error pages people see (403, 404, 405 and the rest): the site's own layout, a plain
sentence, and a way on. The API answers its own errors as JSON (app_factory)."""

from __future__ import annotations

from flask import Response, make_response, render_template
from werkzeug.exceptions import HTTPException

SAID = {
    400: "The request could not be read.",
    403: "Your role may not open this page.",
    404: "There is nothing at this address.",
    405: "This address does not take that kind of request.",
}


def error_page(error: HTTPException) -> Response | HTTPException:
    code = error.code or 500
    if code < 400:
        return error
    response = make_response(
        render_template(
            "error.html",
            code=code,
            name=error.name,
            said=SAID.get(code, error.description),
            detail=error.description if code in SAID and code != 404 else "",
        ),
        code,
    )
    for name, value in error.get_headers():  # Allow (405), Retry-After, ...
        if name.lower() != "content-type":
            response.headers[name] = value
    return response
