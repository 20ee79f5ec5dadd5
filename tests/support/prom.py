"""Reading parsed Prometheus families (prometheus_client.parser) in assertions."""

from __future__ import annotations


def samples(families: dict, family: str, suffix: str = "", **labels: str) -> list:
    """The samples of ``family`` named ``family + suffix`` whose labels include ``labels``."""
    assert family in families, f"{family} is not exposed; exposed: {sorted(families)}"
    return [s for s in families[family].samples
            if s.name == family + suffix and all(s.labels.get(k) == v for k, v in labels.items())]


def sample(families: dict, family: str, suffix: str = "", **labels: str) -> float:
    """The value of the one sample that matches (see samples)."""
    found = samples(families, family, suffix, **labels)
    named = [s for s in families[family].samples if s.name == family + suffix]
    assert len(found) == 1, f"{len(found)} samples of {family}{suffix} with {labels}: {named[:40]}"
    return found[0].value
