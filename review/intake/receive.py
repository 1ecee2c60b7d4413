"""Receiving a deferral request: admission, the request's own checks, the write, the breakers.

The one entry point of intake (`receive_deferral`). Admission comes first (one Redis
round trip counts the request against the agent's rate and takes its place in the flood
window), before the body is even parsed, so a runaway agent costs little. Whatever
refuses the request after that gives the place back; a deferral that was created is
then judged by the flood breaker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from review.agents import breakers
from review.agents.registry import Signer
from review.errors import DomainError, InvalidPrincipalToken
from review.intake import admission, policy_windows
from review.intake.deferrals import Received, create_deferral, earlier_answer
from review.intake.preparation import prepare
from review.intake.principal_keys import KeysUnavailable
from review.observability.metrics import POLICY, observe_decision
from review.services import Services


def receive_deferral(
    svc: Services, agent: Signer, webhook_id: str, read_request: Callable[[], dict[str, Any]]
) -> Received:
    """Admit, read (`read_request` parses and validates the body, raising on bad input),
    score, diff and store the deferral; a retry answers with the deferral it created.

    Raises the DomainError that refused it (rate, kill switch, pending cap, idempotency,
    or whatever `read_request` raised).
    """
    flood = breakers.flood_limit(svc, agent.breaker_flood)
    admitted = admission.admit(
        svc,
        agent.slug,
        webhook_id,
        per_second=svc.settings.agent_rate,
        flood_window=flood[1] if flood else None,
    )
    try:
        body = read_request()
        try:
            prepared = prepare(svc, body, agent.slug)
        except (InvalidPrincipalToken, KeysUnavailable) as refusal:
            received = _retried(svc, agent, webhook_id, body, refusal)
            admission.withdraw(svc, admitted)
            return received
        received = create_deferral(svc, agent, webhook_id, prepared)
    except BaseException:
        admission.withdraw(svc, admitted)
        raise
    if received.created:
        if received.deferral.status != "pending":  # the policy decided it at intake
            observe_decision(received.deferral.status, POLICY, 0.0)
        else:  # the queue pages' polls learn of it (an INCR, sent by another thread)
            svc.arrivals.note()
        policy_windows.add(svc, prepared.counters)  # only what was created counts
        breakers.after_intake(svc, agent, admitted.in_window)
    else:
        admission.withdraw(svc, admitted)
    return received


def _retried(
    svc: Services, agent: Signer, webhook_id: str, body: dict[str, Any], refusal: DomainError
) -> Received:
    """A token that no longer verifies refuses a new request, not the retry of a stored
    one (its answer lost on the way back): that answers with the deferral it created.
    Only looked up on this path, so intake's hot path pays nothing for it."""
    try:
        return earlier_answer(svc, agent.id, webhook_id, body)
    except LookupError:
        raise refusal from None
