"""Back to the agent: the outbox, deliveries as people see them, outbound safety, wake-ups."""
