"""KServe's Python ModelServer (the ``kserve`` package from PyPI), serving TorchScript and ONNX."""
