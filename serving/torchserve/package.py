"""Package a TorchScript file as a TorchServe model archive (.mar) with serveoff's handler."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from model_archiver.model_archiver_config import ModelArchiverConfig
from model_archiver.model_packaging import generate_model_archive

from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.spec import InputSpec

HANDLER = Path(__file__).with_name("handler.py")
SPEC_FILE = "model_spec.json"
SERVER_DIR = "torchserve"  # below the model's artifact directory: its model store


def model_store(layout: ArtifactLayout) -> Path:
    """The model's own model store, holding its .mar."""
    return layout.server_dir(SERVER_DIR)


def mar_of(layout: ArtifactLayout) -> Path:
    """The model's archive, as the build's packaging step wrote it."""
    return model_store(layout) / f"{layout.name}.mar"


def make_mar(name: str, torchscript: Path, input_spec: InputSpec, store: Path) -> Path:
    """Write ``<store>/<name>.mar`` holding the TorchScript file, the handler and the wire spec."""
    store.mkdir(parents=True, exist_ok=True)
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
                export_path=str(store),
                force=True,
            )
        )
    return store / f"{name}.mar"
