"""serveoff's batch-aware TorchServe handler for a TorchScript model.

It runs inside TorchServe's Python worker, so it depends on torch and numpy only. It accepts,
per request and in any mix within one server-side batch:

- JSON in TF Serving's request formats, so both servers get the same wire payload:
  ``{"instances": [...]}`` (row format), ``{"inputs": ...}`` (columnar), or a bare JSON list of
  instances. The reply is ``{"predictions": [...]}``.
- Raw little-endian tensor bytes of the model's wire dtype (REST ``application/octet-stream``
  or a gRPC ``input`` value), holding one or more instances. The reply is raw float32 bytes.

All instances of all requests in a batch run as one forward pass; a malformed request gets
its own 400 reply without failing the rest of the batch.

serveoff passes the thread counts of its ``ServerConfig`` through the worker's environment
(``SERVEOFF_TORCH_THREADS``, ``SERVEOFF_TORCH_INTEROP_THREADS``); they are applied once, at load.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

SPEC_FILE = "model_spec.json"
THREADS_ENV = "SERVEOFF_TORCH_THREADS"
INTEROP_THREADS_ENV = "SERVEOFF_TORCH_INTEROP_THREADS"
logger = logging.getLogger(__name__)


class BadRequest(ValueError):
    """A request this model cannot take; it is answered with HTTP 400."""


class TorchScriptHandler:
    """Loads the TorchScript file of the archive and answers batches of requests."""

    def __init__(self) -> None:
        self.module: torch.jit.ScriptModule | None = None
        self.input_name = "input"
        self.dtype = np.dtype("float32")
        self.instance_shape: tuple[int, ...] = ()

    def initialize(self, context: Any) -> None:
        """Apply the thread counts, read the wire spec and load the serialized TorchScript file."""
        set_threads(os.environ)
        model_dir = context.system_properties["model_dir"]
        with open(os.path.join(model_dir, SPEC_FILE)) as f:
            spec = json.load(f)["input"]
        self.input_name = spec["name"]
        self.dtype = np.dtype(spec["dtype"]).newbyteorder("<")
        self.instance_shape = tuple(spec["shape"])
        serialized = context.manifest["model"]["serializedFile"]
        self.module = torch.jit.load(os.path.join(model_dir, serialized), map_location="cpu").eval()

    def handle(self, data: list[dict], context: Any) -> list[Any]:
        """Answer every request of one server-side batch, in order."""
        decoded: list[tuple[np.ndarray, bool] | BadRequest] = []
        for row in data:
            try:
                decoded.append(self.decode(row))
            except BadRequest as err:
                decoded.append(err)
        good = [d for d in decoded if not isinstance(d, BadRequest)]
        outputs = iter(self.split(self.forward([x for x, _ in good]), [len(x) for x, _ in good]))
        replies: list[Any] = []
        for idx, item in enumerate(decoded):
            if isinstance(item, BadRequest):
                context.set_response_status(400, str(item), idx)
                replies.append(json.dumps({"error": str(item)}))
                continue
            logits, as_json = next(outputs), item[1]
            if as_json:
                context.set_response_content_type(idx, "application/json")
                replies.append(json.dumps({"predictions": logits.tolist()}))
            else:
                context.set_response_content_type(idx, "application/octet-stream")
                replies.append(logits.astype("<f4").tobytes())
        return replies

    def forward(self, batches: list[np.ndarray]) -> np.ndarray:
        """One forward pass over the concatenated instances of all requests."""
        if not batches:
            return np.zeros((0,), dtype=np.float32)
        with torch.inference_mode():
            logits = self.module(torch.from_numpy(np.concatenate(batches)))
        return logits.numpy()

    @staticmethod
    def split(logits: np.ndarray, counts: list[int]) -> list[np.ndarray]:
        """Cut the batch's outputs back into one array per request."""
        return np.split(logits, np.cumsum(counts)[:-1]) if counts else []

    def decode(self, row: dict) -> tuple[np.ndarray, bool]:
        """The request's instances as an array, and whether the reply is JSON."""
        payload = self.payload(row)
        if isinstance(payload, (bytes, bytearray)):
            stripped = bytes(payload[:1]).lstrip()
            if stripped in (b"{", b"["):
                return self.from_json(json.loads(bytes(payload))), True
            return self.from_bytes(bytes(payload)), False
        if isinstance(payload, str):
            return self.from_json(json.loads(payload)), True
        return self.from_json(payload), True

    def payload(self, row: dict) -> Any:
        """The request body: REST puts it under "body" or "data", gRPC under the input's name."""
        for key in ("body", "data", self.input_name):
            if row.get(key) is not None:
                return row[key]
        raise BadRequest(f"empty request: send the input as the body or under {self.input_name!r}")

    def from_json(self, doc: Any) -> np.ndarray:
        """Instances from TF Serving's row (``instances``) or columnar (``inputs``) format, or a list."""
        if isinstance(doc, dict):
            if "instances" in doc:
                doc = doc["instances"]
            elif "inputs" in doc:
                doc = doc["inputs"]
                if isinstance(doc, dict):
                    doc = doc.get(self.input_name)
            else:
                raise BadRequest('JSON body needs "instances" (row format) or "inputs" (columnar format)')
            if isinstance(doc, list) and doc and isinstance(doc[0], dict):
                doc = [instance.get(self.input_name) for instance in doc]
        try:
            array = np.asarray(doc, dtype=self.dtype)
        except (TypeError, ValueError) as err:
            raise BadRequest(f"instances are not a {self.dtype.name} tensor: {err}") from None
        if array.shape[1:] != self.instance_shape:
            raise BadRequest(
                f"instances have shape {list(array.shape)}, expected [n, *{list(self.instance_shape)}]"
            )
        return np.ascontiguousarray(array)

    def from_bytes(self, raw: bytes) -> np.ndarray:
        """Instances from raw little-endian tensor bytes."""
        per_instance = self.dtype.itemsize * int(np.prod(self.instance_shape))
        if not raw or len(raw) % per_instance:
            raise BadRequest(
                f"{len(raw)} bytes is not a whole number of {self.dtype.name} instances "
                f"of shape {list(self.instance_shape)} ({per_instance} bytes each)"
            )
        flat = np.frombuffer(raw, dtype=self.dtype).astype(self.dtype.newbyteorder("="))
        return flat.reshape(-1, *self.instance_shape)


def set_threads(env: Mapping[str, str]) -> None:
    """Set torch's intra-op and inter-op thread counts from ``env`` where serveoff gave them."""
    threads, interop = env.get(THREADS_ENV), env.get(INTEROP_THREADS_ENV)
    if threads:
        torch.set_num_threads(int(threads))
    if interop and torch.get_num_interop_threads() != int(interop):
        torch.set_num_interop_threads(int(interop))  # possible only before any inter-op work: at load
    logger.info(
        "serveoff torch threads: intra-op %d, inter-op %d",
        torch.get_num_threads(),
        torch.get_num_interop_threads(),
    )


_service = TorchScriptHandler()


def handle(data: list[dict] | None, context: Any) -> list[Any] | None:
    """TorchServe's entry point: initialise once, then answer each batch."""
    if _service.module is None:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
