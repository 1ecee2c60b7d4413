"""Countersign: human-in-the-loop approval for AI agents."""
