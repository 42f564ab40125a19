"""The monitoring files (deploy/grafana, deploy/prometheus) read back, and the metric names
their PromQL uses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "bonemets.json"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
COMPOSE = ROOT / "docker-compose.yml"

# PromQL words that are neither functions (followed by "(") nor metric names.
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "and",
                      "or", "unless", "bool", "offset", "inf", "nan"})
# Label lists: by (...), without (...), on (...), ignoring (...), group_x (...).
LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# An identifier that is not the tail of a number such as 1e-9.
IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_:][\w:]*")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dashboard() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return found


def panel_expressions() -> dict[str, str]:
    """Every query of every panel, as 'panel title/refId' -> PromQL."""
    return {f"{panel['title']}/{target['refId']}": target["expr"]
            for panel in dashboard()["panels"] for target in panel.get("targets", ())}


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def metric_names_in(expression: str) -> set[str]:
    """The metric names a PromQL expression reads: its identifiers, less strings, label
    matchers and lists, range durations, functions and keywords."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expression)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = LABEL_LISTS.sub("", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    names = set()
    for match in IDENTIFIER.finditer(text):
        word = match.group()
        if text[match.end():].lstrip().startswith("(") or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def names_used() -> dict[str, set[str]]:
    """Metric name -> where it is used (panel queries and alert rules)."""
    used: dict[str, set[str]] = {}
    sources = {**{f"panel {k}": v for k, v in panel_expressions().items()},
               **{f"alert {rule['alert']}": rule["expr"] for rule in alert_rules()}}
    for where, expression in sources.items():
        for name in metric_names_in(expression):
            used.setdefault(name, set()).add(where)
    return used
