"""The program KServe's process runs: ``.venv-kserve/bin/python serve.py CONFIG`` (or the image's python).

It imports kserve, numpy and one runtime (torch or onnxruntime), never serveoff: it runs in KServe's own
environment. ``CONFIG`` is the JSON that ``serving/kserve/config.py`` writes: the address, the runtime, the
thread and instance counts and one entry per model. Each model is a ``kserve.Model`` whose ``predict``
runs its batch on one of ``instances`` copies of the model, each in a thread of its own (torch and ONNX
Runtime release the GIL while they compute), so the event loop keeps accepting requests meanwhile.

KServe 0.21 binds REST on 0.0.0.0 and gRPC on [::], hard-coded; this program binds both on the configured
host instead (127.0.0.1 natively; every address of a container, in one).
"""

from __future__ import annotations

import asyncio
import json
import queue
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc.aio
import kserve
import kserve.model_server
import numpy as np
from kserve import InferOutput, InferRequest, InferResponse
from kserve.errors import InvalidInput
from kserve.utils.utils import generate_uuid


def torchscript_runner(path: str, config: dict):
    """A TorchScript module on numpy batches, with the configured thread counts (process-wide)."""
    import torch

    if config.get("inter_op_threads"):
        torch.set_num_interop_threads(config["inter_op_threads"])
    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    module = torch.jit.load(path, map_location="cpu").eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(batch)).numpy()

    return predict


def onnx_runner(path: str, config: dict):
    """An ONNX Runtime session on the CPU, with the configured thread counts (per session)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = config.get("threads") or 0  # 0: ONNX Runtime's default
    options.inter_op_num_threads = config.get("inter_op_threads") or 0
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


RUNNERS = {"torchscript": torchscript_runner, "onnx": onnx_runner}


class ServedModel(kserve.Model):
    """One model over V1 (``instances``) and the Open Inference Protocol v2 (one input tensor)."""

    def __init__(self, entry: dict, config: dict) -> None:
        super().__init__(entry["name"])
        self.entry = entry
        self.config = config
        self.dtype = np.dtype(entry["dtype"])
        self.instance_shape = tuple(entry["shape"])
        self.copies: queue.SimpleQueue = queue.SimpleQueue()
        self.pool: ThreadPoolExecutor | None = None

    def load(self) -> bool:
        count = self.config.get("instances") or 1
        make = RUNNERS[self.config["runtime"]]
        for _ in range(count):
            self.copies.put(make(self.entry["path"], self.config))
        self.pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix=f"{self.name}-instance")
        self.ready = True
        return self.ready

    async def predict(self, payload, headers=None):
        batch = self._batch(payload)
        result = await asyncio.get_running_loop().run_in_executor(self.pool, self._run, batch)
        if isinstance(payload, dict):
            return {"predictions": result.tolist()}
        output = InferOutput(name=self.entry["output"], shape=list(result.shape), datatype="FP32")
        output.set_data_from_numpy(result, binary_data=payload.use_binary_outputs)
        return InferResponse(
            model_name=self.name, infer_outputs=[output], response_id=payload.id or generate_uuid()
        )

    def _run(self, batch: np.ndarray) -> np.ndarray:
        runner = self.copies.get()
        try:
            return np.asarray(runner(batch), dtype=np.float32)
        finally:
            self.copies.put(runner)

    def _batch(self, payload) -> np.ndarray:
        """The request's inputs as one contiguous batch of the model's wire type and instance shape."""
        try:
            if isinstance(payload, InferRequest):
                batch = payload.inputs[0].as_numpy()
            else:
                batch = np.asarray(payload["instances"])
            batch = np.array(batch, dtype=self.dtype, order="C")  # a writable copy: torch wants one
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise InvalidInput(f"cannot read the request's inputs: {err}") from None
        if batch.ndim == len(self.instance_shape):
            batch = batch[None]
        if tuple(batch.shape[1:]) != self.instance_shape:
            raise InvalidInput(f"inputs of shape {list(batch.shape)} do not fit [n, {self.instance_shape}]")
        return batch


def bind_to(host: str) -> None:
    """Make KServe's REST and gRPC servers listen on ``host`` instead of their hard-coded any-address."""
    rest_init = kserve.model_server.RESTServer.__init__

    def rest(self, *args, **kwargs) -> None:
        rest_init(self, *args, **kwargs)
        self.config.host = host

    kserve.model_server.RESTServer.__init__ = rest
    make_server = grpc.aio.server

    def grpc_server(*args, **kwargs):
        server = make_server(*args, **kwargs)
        add_port = server.add_insecure_port
        server.add_insecure_port = lambda address: add_port(f"{host}:{address.rpartition(':')[2]}")
        return server

    kserve.protocol.grpc.server.aio.server = grpc_server


def main(path: str) -> None:
    config = json.loads(Path(path).read_text())
    bind_to(config["host"])
    models = [ServedModel(entry, config) for entry in config["models"]]
    for model in models:
        model.load()
    server = kserve.ModelServer(
        http_port=config["http_port"], grpc_port=config["grpc_port"], workers=1, enable_docs_url=False,
        enable_latency_logging=False,
    )  # fmt: skip
    server.start(models)


if __name__ == "__main__":
    main(sys.argv[1])
