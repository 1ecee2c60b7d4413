"""The Redis keys the service shares between processes, in one place."""


def agent_status(slug: str) -> str:
    """The agent's status object as JSON, for the status endpoint (PROTOCOL.md 4.5)."""
    return f"countersign:agent-status:{slug}"


def rate(slug: str, second: int) -> str:
    """The agent's requests in one second (a counter), for the rate limit."""
    return f"countersign:rate:{slug}:{second}"


def flood(slug: str) -> str:
    """The agent's recent deferral requests (webhook-ids by arrival), for the flood breaker."""
    return f"countersign:breaker:flood:{slug}"


def rejections(slug: str) -> str:
    """Reviewers' rejections of the agent in a row, for the rejection breaker."""
    return f"countersign:breaker:rejections:{slug}"


STATUS_TTL_SECONDS = 10
