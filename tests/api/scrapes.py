"""Prometheus text read back as samples, through prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, keyed by its name and labels."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when absent (a labelled counter not yet incremented)."""
    return found.get((name, frozenset(labels.items())), 0.0)


# The sample names a family of each type writes: a labelled metric no code path has
# touched yet is exposed as its HELP and TYPE lines alone, and is still there to query.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
            "summary": ("_count", "_sum"), "gauge": ("",), "untyped": ("",)}


def metric_names(text: str) -> set[str]:
    """Every name a query may use: each family's, its samples', and those its type writes."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
    return names


def counted(name: str, **labels: str) -> float:
    """A sample of this process's own registry (where the in-process app counts); 0 when
    absent."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
