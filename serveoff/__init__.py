"""serveoff: the same trained model on TorchServe and TF Serving, measured side by side."""

__version__ = "0.1.0"
