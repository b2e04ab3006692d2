"""Bad input: malformed, mis-shaped, mistyped, empty, oversize, unknown-model and wrong-type requests,
over every protocol the server speaks.

Each case is the good wire request with one thing wrong (in an untyped JSON body, the JSON edited; in a
typed protocol, the array the server's client encodes); the server's status (HTTP code or gRPC code),
the start of its error body, whether that body says what is wrong, and whether a good request is still
answered correctly afterwards are recorded.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np

from serveoff.errors import ServeoffError
from serveoff.loadtest.bench import input_batch
from serveoff.loadtest.probes.context import Probed, Reply, correct, send_once
from serveoff.loadtest.probes.schema import ProbeResult
from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving.base import WireRequest

# 8x gRPC's default message limit; serveoff configures TorchServe to take up to 256 MiB, so it may answer
OVERSIZE_BYTES = 32 * 2**20
EXCERPT = 160
TYPED_JSON = b'"datatype"'  # in a JSON body whose tensors name their type (the Open Inference Protocol)
BAD_TIMEOUT_S = 30.0  # a bad request gets this long to be answered (a large one takes a while to parse)
AGAIN_S = 60.0  # after each, a good request must be answered again within this
# words an error body that says what is wrong uses
CLEAR_WORDS = ("shape", "dtype", "type", "json", "pars", "decode", "exist", "invalid", "malformed",
               "not found", "unknown", "size", "large", "empty", "content", "expect", "must", "missing",
               "input")  # fmt: skip


def _json_cases(wire: WireRequest) -> dict[str, bytes | None]:
    """The REST bodies with one thing wrong (``None``: the body is not JSON, so the case does not apply)."""
    try:
        doc = json.loads(wire.body)
    except ValueError:
        return {"wrong shape": None, "wrong dtype": None, "empty batch": None}
    return {
        "wrong shape": json.dumps(_map_rows(doc, lambda row: row[:-1])).encode(),
        "wrong dtype": json.dumps(_map_numbers(doc)).encode(),
        "empty batch": json.dumps(_map_batch(doc)).encode(),
    }


def _map_rows(doc, shorten):
    """Each instance of the batch (the outermost list of lists) shortened: one input row fewer."""
    if isinstance(doc, dict):
        return {k: _map_rows(v, shorten) for k, v in doc.items()}
    if isinstance(doc, list) and doc and isinstance(doc[0], list):
        return [shorten(x) if isinstance(x, list) else x for x in doc]
    return [_map_rows(x, shorten) for x in doc] if isinstance(doc, list) else doc


def _map_numbers(doc):
    """Every number as a string."""
    if isinstance(doc, dict):
        return {k: _map_numbers(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_map_numbers(x) for x in doc]
    return "x" if isinstance(doc, int | float) and not isinstance(doc, bool) else doc


def _map_batch(doc):
    """The outermost list of lists (the batch) emptied."""
    if isinstance(doc, dict):
        return {k: _map_batch(v) for k, v in doc.items()}
    if isinstance(doc, list) and doc and isinstance(doc[0], list):
        return []
    return [_map_batch(x) for x in doc] if isinstance(doc, list) else doc


def cases(probed: Probed) -> dict[str, WireRequest | None]:
    """Every bad request for ``probed``'s protocol (``None`` where a case cannot be built for it)."""
    good = probed.request()
    server, endpoints = probed.server, probed.server.endpoints
    unknown = ArtifactLayout(probed.layout.root, "no-such-model")
    rows = max(1, OVERSIZE_BYTES // max(1, len(good.body)))
    built = {
        "malformed body": replace(good, body=b"{\x00not a request"),
        "unknown model": server.wire_request(endpoints, unknown, probed.protocol, _one(probed.layout)),
    }
    oversize = {"oversize payload": replace(good, body=_oversize(probed, rows))}  # last: it may keep it busy
    if good.protocol == "grpc":
        return built | _array_cases(probed) | {"wrong content type": None} | oversize
    if TYPED_JSON in good.body:  # the Open Inference Protocol's JSON: typed like its gRPC
        bodies = _array_cases(probed)
    else:
        bodies = {name: None if body is None else replace(good, body=body)
                  for name, body in _json_cases(good).items()}  # fmt: skip
    content = replace(good, headers=good.headers | {"Content-Type": "text/plain"})
    return built | bodies | {"wrong content type": content} | oversize


def _array_cases(probed: Probed) -> dict[str, WireRequest | None]:
    """The requests of a typed protocol (gRPC, the Open Inference Protocol's JSON) with one thing wrong in
    the array, encoded as the server's own client encodes a batch (``None`` where that encoder refuses the
    batch, as TorchServe's checks the model's shape)."""
    batch = _one(probed.layout)
    other = np.float32 if np.issubdtype(batch.dtype, np.integer) else np.int32
    wrong = {"wrong shape": batch[:, :-1], "wrong dtype": batch.astype(other), "empty batch": batch[:0]}
    built: dict[str, WireRequest | None] = {}
    for name, array in wrong.items():
        try:
            built[name] = probed.server.wire_request(probed.server.endpoints, probed.layout, probed.protocol,
                                                     array)  # fmt: skip
        except ServeoffError:
            built[name] = None
    return built


def _one(layout: ArtifactLayout) -> np.ndarray:
    return input_batch(layout, 1)


def _oversize(probed: Probed, rows: int) -> bytes:
    return probed.server.wire_request(probed.server.endpoints, probed.layout, probed.protocol,
                                      input_batch(probed.layout, min(rows, 2**20))).body  # fmt: skip


def _answers_again(probed: Probed, good: WireRequest, expected: np.ndarray) -> tuple[float | None, bool]:
    """Seconds until a good request is answered again (``None``: not within ``AGAIN_S``), and whether that
    first answer was correct."""
    started = time.monotonic()
    while time.monotonic() - started < AGAIN_S:
        reply = send_once(good, probed.settings.timeout_s)
        if reply.ok:
            return round(time.monotonic() - started, 3), correct(probed, reply, expected)
        time.sleep(0.2)
    return None, False


def clear(reply: Reply) -> bool:
    """Whether an error body says, in words, what is wrong (not empty, not a stack trace or an HTML page)."""
    text = reply.body[:2000].decode("utf-8", "replace").lower()
    if not text or "traceback" in text or "<html" in text:
        return False
    return any(word in text for word in CLEAR_WORDS)


def bad_input(probed: Probed) -> ProbeResult:
    """Over each protocol the server speaks, send each bad request once, then good ones until one is
    answered: it must be correct."""
    result = probed.result("bad_input")
    for protocol in probed.own.protocols:
        result.cases += _protocol_cases(replace(probed, protocol=protocol))
    sent = [c for c in result.cases if "refused" in c]
    result.figures = {
        "cases": len(sent),
        "refused": sum(bool(c["refused"]) for c in sent),
        "clear": sum(bool(c["clear"]) for c in sent),
        "still_correct_after_all": all(c["still_correct"] for c in sent),
        "protocols": ", ".join(probed.own.protocols),
    }
    result.findings = [_in_words(protocol, [c for c in result.cases if c["protocol"] == protocol])
                       for protocol in probed.own.protocols]  # fmt: skip
    return result


def _in_words(protocol: str, found: list[dict[str, str | int | bool | None]]) -> str:
    """One line per protocol: each case and the status it got (with "unclear" where the body does not say
    what was wrong, "then wrong" where the next good request was not answered correctly)."""
    said = []
    for case in found:
        marks = [m for m, bad in (("unclear", case.get("clear") is False),
                                  ("then wrong", case.get("still_correct") is False)) if bad]  # fmt: skip
        said.append(f"{case['case']} {case['status']}" + (f" ({', '.join(marks)})" if marks else ""))
    return f"{protocol}: " + "; ".join(said)


def _protocol_cases(probed: Probed) -> list[dict[str, str | int | bool | None]]:
    """Every bad request of ``probed``'s protocol, each with what the server did."""
    good = probed.request()
    expected_reply = send_once(good, probed.settings.timeout_s)
    expected = probed.server.decode_reply(probed.layout, probed.protocol, expected_reply.body)
    found: list[dict[str, str | int | bool | None]] = []
    for name, wire in cases(probed).items():
        if wire is None:
            found.append({"case": name, "protocol": probed.protocol, "status": "not applicable"})
            continue
        reply = send_once(wire, max(probed.settings.timeout_s, BAD_TIMEOUT_S))
        back_s, still_correct = _answers_again(probed, good, expected)
        found.append({
            "case": name, "protocol": probed.protocol, "status": reply.status, "refused": not reply.ok,
            "clear": clear(reply), "excerpt": reply.body[:EXCERPT].decode("utf-8", "replace"),
            "still_correct": still_correct, "answers_again_s": back_s,
        })  # fmt: skip
    return found
