"""Reading /metrics in tests: the text parsed into {(sample name, labels): value}."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """One sample's value (0 when the series is absent, as for a counter never touched)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def family_names(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}
