"""Server-side Prometheus metrics as plain data."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from serveoff.errors import ServeoffError


def parse(text: str) -> dict[str, float]:
    """Prometheus text exposition as ``name{label="value",...}`` -> value, labels sorted."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def scrape(url: str, timeout: float = 5.0) -> dict[str, float]:
    """Fetch and parse ``url``; a clear error when the server does not answer."""
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as err:
        raise ServeoffError(f"cannot scrape metrics from {url}: {err}") from None
    return parse(response.text)
