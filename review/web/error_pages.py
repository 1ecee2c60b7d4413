"""Error pages people see (403, 404, 405, 500 and the rest): the site's own layout, a plain
sentence, and a way on; a 500 also gives the request id its logged traceback carries
(review/web/request_ids.py), to quote in a report. The API answers its own errors as JSON
(app_factory)."""

from __future__ import annotations

from flask import Response, make_response, render_template
from werkzeug.exceptions import HTTPException

from review.web.request_ids import current_request_id

SAID = {
    400: "The request could not be read.",
    403: "Your role may not open this page.",
    404: "There is nothing at this address.",
    405: "This address does not take that kind of request.",
    500: "Something went wrong on our side, not in what you did.",
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
            detail=error.description if code in SAID and code not in (404, 500) else "",
            request_id=current_request_id() if code >= 500 else None,
        ),
        code,
    )
    for name, value in error.get_headers():  # Allow (405), Retry-After, ...
        if name.lower() != "content-type":
            response.headers[name] = value
    return response
