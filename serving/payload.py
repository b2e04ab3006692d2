"""The wire payload every server's REST API gets: one JSON body, byte for byte the same for each server."""

from __future__ import annotations

import json

import numpy as np

JSON_HEADERS = {"Content-Type": "application/json"}


def json_body(batch: np.ndarray) -> bytes:
    """TF Serving's row format, ``{"instances": rows}``, compact: what both servers' REST APIs take."""
    return json.dumps({"instances": np.asarray(batch).tolist()}, separators=(",", ":")).encode()
