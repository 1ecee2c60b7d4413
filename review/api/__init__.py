"""The agent-facing HTTP API (/api/v1), as PROTOCOL.md sections 2 to 5 say."""
