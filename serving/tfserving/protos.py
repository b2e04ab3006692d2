"""TF Serving's protobuf messages, usable without importing TensorFlow.

tensorflow-serving-api's generated modules import ``tensorflow.core.framework.*_pb2``, which runs TensorFlow's
``__init__``: about 8 s, 1,600 modules and 600 MB of memory in every process that sends a gRPC request,
the load generator included. Here the serialized descriptors those modules carry are read from their
source files (parsed, never run) into a private descriptor pool: the messages are the installed ones.

Two config messages are not in the pip package at all (``BatchingParameters`` and ``MonitoringConfig``); they
are transcribed below from TF Serving's ``session_bundle_config.proto`` and ``monitoring_config.proto``, with
upstream's names and numbers (``BatchingParameters``: the fields serveoff writes).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import Message

from serveoff.errors import ServeoffError

_POOL = descriptor_pool.DescriptorPool()

_BATCHING_PROTO = """
name: "tensorflow_serving/servables/tensorflow/session_bundle_config.proto"
package: "tensorflow.serving"
dependency: "google/protobuf/wrappers.proto"
syntax: "proto3"
message_type {
  name: "BatchingParameters"
  field { name: "max_batch_size" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.Int64Value" }
  field { name: "batch_timeout_micros" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.Int64Value" }
  field { name: "max_enqueued_batches" number: 3 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.Int64Value" }
  field { name: "num_batch_threads" number: 4 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.Int64Value" }
}
"""

_MONITORING_PROTO = """
name: "tensorflow_serving/config/monitoring_config.proto"
package: "tensorflow.serving"
syntax: "proto3"
message_type {
  name: "PrometheusConfig"
  field { name: "enable" number: 1 label: LABEL_OPTIONAL type: TYPE_BOOL }
  field { name: "path" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING }
}
message_type {
  name: "MonitoringConfig"
  field { name: "prometheus_config" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".tensorflow.serving.PrometheusConfig" }
}
"""


def _installed_descriptor(proto_file: str) -> bytes:
    """The serialized ``FileDescriptorProto`` that the generated module of ``proto_file`` registers."""
    if proto_file.startswith("google/protobuf/"):
        stem = Path(proto_file).stem
        return importlib.import_module(f"google.protobuf.{stem}_pb2").DESCRIPTOR.serialized_pb
    package, _, rest = proto_file.partition("/")
    spec = importlib.util.find_spec(package)  # a top-level package is located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise ServeoffError(
            f"cannot find the {package} package for {proto_file}; reinstall serveoff's dependencies"
        )
    module = Path(spec.submodule_search_locations[0]) / (rest.removesuffix(".proto") + "_pb2.py")
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "AddSerializedFile":
            return node.args[0].value
    raise ServeoffError(f"{module} holds no serialized descriptor; reinstall tensorflow-serving-api")


def _add(data: bytes) -> None:
    """Add one file descriptor to the pool, after its dependencies."""
    for dependency in descriptor_pb2.FileDescriptorProto.FromString(data).dependency:
        try:
            _POOL.FindFileByName(dependency)
        except KeyError:
            _add(_installed_descriptor(dependency))
    _POOL.AddSerializedFile(data)


def _message(full_name: str) -> type[Message]:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full_name))


for _text in (_BATCHING_PROTO, _MONITORING_PROTO):
    _add(text_format.Parse(_text, descriptor_pb2.FileDescriptorProto()).SerializeToString())
_add(_installed_descriptor("tensorflow_serving/apis/predict.proto"))

BatchingParameters = _message("tensorflow.serving.BatchingParameters")
MonitoringConfig = _message("tensorflow.serving.MonitoringConfig")
PredictRequest = _message("tensorflow.serving.PredictRequest")
PredictResponse = _message("tensorflow.serving.PredictResponse")
TensorProto = _message("tensorflow.TensorProto")
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"

_DATA_TYPES = _POOL.FindEnumTypeByName("tensorflow.DataType").values_by_name
DT_FLOAT = _DATA_TYPES["DT_FLOAT"].number
DT_INT32 = _DATA_TYPES["DT_INT32"].number
