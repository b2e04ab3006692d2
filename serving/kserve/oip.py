"""The Open Inference Protocol (v2), client side: REST JSON tensors and gRPC ``ModelInfer``.

Nothing here is KServe's: the same requests go unchanged to any server of the protocol (KServe, Triton,
MLServer). The gRPC messages are declared below from the protocol's published message and field numbers
(package ``inference``), as a descriptor built in code, so neither KServe's nor anyone's generated
module is imported; only the fields serveoff sends or reads are declared (protobuf skips the others).
"""

from __future__ import annotations

import json
import math

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from serveoff.errors import ServeoffError
from serveoff.serving.base import WireRequest
from serveoff.serving.payload import JSON_HEADERS

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
READY_METHOD = "/inference.GRPCInferenceService/ModelReady"
# numpy dtype <-> the protocol's tensor data types (the ones serveoff's models take and give).
DATATYPES = {np.dtype("float32"): "FP32", np.dtype("int32"): "INT32", np.dtype("int64"): "INT64"}
_NUMPY = {name: dtype for dtype, name in DATATYPES.items()}

_F = descriptor_pb2.FieldDescriptorProto
# (message, [(field, number, type, repeated, message type)]): the protocol's numbering.
_MESSAGES = [
    ("ModelReadyRequest", [("name", 1, _F.TYPE_STRING, False, ""),
                           ("version", 2, _F.TYPE_STRING, False, "")]),
    ("ModelReadyResponse", [("ready", 1, _F.TYPE_BOOL, False, "")]),
    ("InferTensorContents", [("int_contents", 2, _F.TYPE_INT32, True, ""),
                             ("int64_contents", 3, _F.TYPE_INT64, True, ""),
                             ("fp32_contents", 6, _F.TYPE_FLOAT, True, "")]),
    ("InferInputTensor", [("name", 1, _F.TYPE_STRING, False, ""), ("datatype", 2, _F.TYPE_STRING, False, ""),
                          ("shape", 3, _F.TYPE_INT64, True, ""),
                          ("contents", 5, _F.TYPE_MESSAGE, False, "InferTensorContents")]),
    ("InferRequestedOutputTensor", [("name", 1, _F.TYPE_STRING, False, "")]),
    ("ModelInferRequest", [("model_name", 1, _F.TYPE_STRING, False, ""),
                           ("model_version", 2, _F.TYPE_STRING, False, ""),
                           ("id", 3, _F.TYPE_STRING, False, ""),
                           ("inputs", 5, _F.TYPE_MESSAGE, True, "InferInputTensor"),
                           ("outputs", 6, _F.TYPE_MESSAGE, True, "InferRequestedOutputTensor"),
                           ("raw_input_contents", 7, _F.TYPE_BYTES, True, "")]),
    ("InferOutputTensor", [("name", 1, _F.TYPE_STRING, False, ""), ("datatype", 2, _F.TYPE_STRING, False, ""),
                           ("shape", 3, _F.TYPE_INT64, True, ""),
                           ("contents", 5, _F.TYPE_MESSAGE, False, "InferTensorContents")]),
    ("ModelInferResponse", [("model_name", 1, _F.TYPE_STRING, False, ""),
                            ("model_version", 2, _F.TYPE_STRING, False, ""),
                            ("id", 3, _F.TYPE_STRING, False, ""),
                            ("outputs", 5, _F.TYPE_MESSAGE, True, "InferOutputTensor"),
                            ("raw_output_contents", 6, _F.TYPE_BYTES, True, "")]),
]  # fmt: skip


def _file() -> descriptor_pb2.FileDescriptorProto:
    """The protocol's messages as a file descriptor (a private name: no clash with a generated module)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="serveoff/oip_v2.proto", package="inference", syntax="proto3"
    )
    for name, fields in _MESSAGES:
        message = proto.message_type.add(name=name)
        for field, number, kind, repeated, type_name in fields:
            label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
            entry = message.field.add(name=field, number=number, type=kind, label=label)
            if type_name:
                entry.type_name = f".inference.{type_name}"
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _message(name: str) -> type[Message]:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"inference.{name}"))


ModelReadyRequest = _message("ModelReadyRequest")
ModelReadyResponse = _message("ModelReadyResponse")
ModelInferRequest = _message("ModelInferRequest")
ModelInferResponse = _message("ModelInferResponse")


def datatype(dtype: np.dtype) -> str:
    """The protocol's name for ``dtype``; one clear line for a type serveoff does not send."""
    if dtype not in DATATYPES:
        raise ServeoffError(
            f"cannot send {dtype} tensors over the Open Inference Protocol; send float32 or int32"
        )
    return DATATYPES[dtype]


def rest_body(input_name: str, batch: np.ndarray) -> bytes:
    """``POST /v2/models/{model}/infer``'s JSON: one input tensor, its data flattened in row-major order."""
    tensor = {"name": input_name, "shape": list(batch.shape), "datatype": datatype(batch.dtype),
              "data": batch.reshape(-1).tolist()}  # fmt: skip
    return json.dumps({"inputs": [tensor]}, separators=(",", ":")).encode()


def grpc_body(model: str, input_name: str, batch: np.ndarray) -> bytes:
    """A serialized ``ModelInferRequest``: the tensor's little-endian bytes in ``raw_input_contents``."""
    request = ModelInferRequest(model_name=model)
    request.inputs.add(name=input_name, datatype=datatype(batch.dtype), shape=list(batch.shape))
    request.raw_input_contents.append(batch.astype(batch.dtype.newbyteorder("<"), copy=False).tobytes())
    return request.SerializeToString()


def wire_request(base_url: str, grpc_target: str, model: str, input_name: str, protocol: str,
                 batch: np.ndarray) -> WireRequest:  # fmt: skip
    """The protocol's request for ``batch`` over ``protocol`` (``rest`` or ``grpc``)."""
    batch = np.ascontiguousarray(batch)
    if protocol == "rest":
        return WireRequest(
            "rest", base_url, f"/v2/models/{model}/infer", rest_body(input_name, batch), JSON_HEADERS
        )
    return WireRequest("grpc", grpc_target, INFER_METHOD, grpc_body(model, input_name, batch), {})


def decode_reply(protocol: str, body: bytes, output_name: str) -> np.ndarray:
    """The output ``output_name`` (else the only output) of a reply, as numpy in its own data type."""
    try:
        if protocol == "rest":
            outputs = json.loads(body)["outputs"]
            output = _pick(outputs, [o["name"] for o in outputs], output_name)
            return _shaped(np.asarray(output["data"], dtype=_NUMPY[output["datatype"]]), output["shape"])
        reply = ModelInferResponse.FromString(body)
        index = _pick(range(len(reply.outputs)), [o.name for o in reply.outputs], output_name)
        return _grpc_tensor(reply, index)
    except (ValueError, KeyError, TypeError, IndexError, DecodeError) as err:
        raise ServeoffError(f"the {protocol} reply holds no output tensor {output_name!r}: {err}") from None


def _pick(items, names: list[str], wanted: str):
    """The item named ``wanted``, else the only one."""
    items = list(items)
    if wanted in names:
        return items[names.index(wanted)]
    if len(items) == 1:
        return items[0]
    raise KeyError(f"outputs {names}")


def _grpc_tensor(reply: Message, index: int) -> np.ndarray:
    output = reply.outputs[index]
    dtype = _NUMPY[output.datatype]
    if reply.raw_output_contents:
        values = np.frombuffer(reply.raw_output_contents[index], dtype=dtype.newbyteorder("<"))
    else:
        field = {"FP32": "fp32_contents", "INT32": "int_contents", "INT64": "int64_contents"}[output.datatype]
        values = np.asarray(getattr(output.contents, field), dtype=dtype)
    return _shaped(values.astype(dtype), list(output.shape))


def _shaped(values: np.ndarray, shape: list[int]) -> np.ndarray:
    if values.size != math.prod(shape):
        raise ValueError(f"{values.size} values for shape {shape}")
    return values.reshape(shape)
