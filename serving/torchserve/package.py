"""Package a TorchScript file as a TorchServe model archive (.mar) with serveoff's handler."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from model_archiver.model_archiver_config import ModelArchiverConfig
from model_archiver.model_packaging import generate_model_archive

from serveoff.models.spec import InputSpec

HANDLER = Path(__file__).with_name("handler.py")
SPEC_FILE = "model_spec.json"


def make_mar(name: str, torchscript: Path, input_spec: InputSpec, model_store: Path) -> Path:
    """Write ``<model_store>/<name>.mar`` holding the TorchScript file, the handler and the wire spec."""
    model_store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        spec_file = Path(scratch) / SPEC_FILE
        spec_file.write_text(json.dumps({"input": input_spec.to_json()}))
        generate_model_archive(
            ModelArchiverConfig(
                model_name=name,
                handler=str(HANDLER),
                version="1.0",
                serialized_file=str(torchscript),
                extra_files=str(spec_file),
                export_path=str(model_store),
                force=True,
            )
        )
    return model_store / f"{name}.mar"
