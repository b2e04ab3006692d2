"""Server-side Prometheus metrics as plain data, under the names each server exposes."""

from __future__ import annotations

import re

import requests
from prometheus_client.parser import text_string_to_metric_families

from serveoff.errors import ServeoffError

# A ``# TYPE <name> counter`` line: prometheus_client names such a counter's samples ``<name>_total``
# even where the server wrote ``<name>`` (as TF Serving does: ``:tensorflow:serving:request_count``).
_COUNTER = re.compile(r"^#\s*TYPE\s+(\S+)\s+counter\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, float]:
    """Prometheus text exposition as ``name{label="value",...}`` -> value, labels sorted, each sample under
    the name the text gives it; a ``ServeoffError`` when the text is not Prometheus' format."""
    bare = {name for name in _COUNTER.findall(text) if not name.endswith("_total")}
    values: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name = sample.name
                if family.type == "counter" and family.name in bare and name == f"{family.name}_total":
                    name = family.name
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                values[f"{name}{{{labels}}}" if labels else name] = sample.value
    except (ValueError, IndexError, KeyError, TypeError) as err:  # the parser's ways of saying "not metrics"
        raise ServeoffError(f"not Prometheus text ({type(err).__name__}: {err})") from None
    return values


def scrape(url: str, timeout: float = 5.0) -> dict[str, float]:
    """Fetch and parse ``url``; a clear error when the server does not answer or answers no metrics."""
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as err:
        raise ServeoffError(f"cannot scrape metrics from {url}: {err}") from None
    try:
        return parse(response.text)
    except ServeoffError as err:
        raise ServeoffError(f"cannot parse the metrics of {url}: {err}") from None
