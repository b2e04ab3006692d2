"""How the tests talk to a server: the product's own wire request, sent the product's one way (``send``)."""

from __future__ import annotations

import numpy as np

from serveoff.errors import ServeoffError
from serveoff.loadtest.send import SendError, send
from serveoff.serving.base import Server


def predict(
    server: Server, model: str, protocol: str, batch: np.ndarray, timeout_s: float = 10.0
) -> np.ndarray:
    """``model``'s outputs for ``batch`` from the running ``server`` over ``protocol``; a failed request is
    raised as the server's own diagnosis (with its log tail when it died)."""
    layout = next((m for m in server.models if m.name == model), None)
    if layout is None:
        raise ServeoffError(f"{server.title} does not serve {model!r}")
    request = server.wire_request(server.endpoints, layout, protocol, np.asarray(batch))
    try:
        body = send(request, timeout_s)
    except SendError as err:
        raise server.diagnose(str(err), err.lost) from None
    return server.decode_reply(layout, protocol, body)
