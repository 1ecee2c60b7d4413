"""Agents: the registry, the kill switch and its breakers, execution reports."""
