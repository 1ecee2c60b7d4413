"""The policy page for admins and auditors: every rule (kind, condition, points, outcome,
agents), each agent's declared scope, and how often each rule matched in the last 7
days with the outcomes of what it matched (review/intake/policy_overview.py). Every
card's policy version links here."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, render_template, request

from review.intake.policy import SCOPE
from review.intake.policy_overview import WINDOW_DAYS, condition, rule_stats
from review.models import utcnow
from review.services import current_services
from review.web.auth import roles_required

bp = Blueprint("policy", __name__)


@bp.get("/policy")
@roles_required("admin", "auditor")
def page():
    svc = current_services()
    with svc.db.read() as session:
        stats = rule_stats(session, utcnow() - timedelta(days=WINDOW_DAYS))
    return render_template(
        "policy/index.html",
        policy=svc.policy,
        path=svc.settings.policy_path,
        stats=stats,
        scope_rule=SCOPE,
        days=WINDOW_DAYS,
        asked_version=request.args.get("version"),
    )


def init_app(app) -> None:
    app.register_blueprint(bp)
    app.jinja_env.globals["rule_condition"] = condition
