"""``serveoff build``: train, export, package and parity-check models, cached by content hash.

A model is built in a staging directory beside its final place and moved there only once every
file is written and parity holds, so nothing half-written ever looks like a valid artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import serveoff.models
from serveoff.errors import ParityError, ServeoffError
from serveoff.models import zoo
from serveoff.models.artifacts import (
    SCHEMA,
    ArtifactLayout,
    built_source,
    check_name,
    library_versions,
    read_manifest,
)
from serveoff.models.export import OUTPUT_NAME, export_savedmodel, export_torchscript
from serveoff.models.parity import DEFAULT_ATOL, ParityReport, compare
from serveoff.models.runners import SavedModelRunner, TorchScriptRunner
from serveoff.models.runtime_build import RuntimeBuild, build_runtimes
from serveoff.models.spec import Architecture, InputSpec
from serveoff.models.train import train
from serveoff.serving import runtimes
from serveoff.serving.targets import SERVERS, server_class

SAMPLES_KEPT = 8
NPY_MAGIC = np.lib.format.MAGIC_PREFIX  # how every .npy file begins
Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    """One built model: where it is, whether it came from the cache, and its parity figures."""

    name: str
    root: Path
    cached: bool
    parity: ParityReport


def code_fingerprint() -> str:
    """A hash of the code that turns a model into artifacts (models, the runtimes and every registered
    server's packaging step)."""
    digest = hashlib.sha256()
    models = sorted(Path(serveoff.models.__file__).parent.rglob("*.py"))
    models += sorted(Path(runtimes.__file__).parent.glob("*.py"))
    packagers = dict.fromkeys(path for name in SERVERS for path in server_class(name).packaging_code)
    for path in [*models, *packagers]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def zoo_hash(arch: Architecture, seed: int) -> str:
    """The content hash of a zoo model: its configuration, training, code and library versions."""
    recipe = {
        "name": arch.name,
        "config": arch.config(),
        "input": arch.input.to_json(),
        "num_classes": arch.num_classes,
        "training": asdict(arch.training),
        "seed": seed,
        "code": code_fingerprint(),
        "versions": library_versions(),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def cached(root: Path, content_hash: str, atol: float) -> ParityReport | None:
    """The parity of a complete, up-to-date build at ``root`` that holds under ``atol``, else ``None``."""
    manifest = read_manifest(root)
    if manifest is None or manifest["content_hash"] != content_hash:
        return None
    figures = json.loads((root / manifest["files"]["parity"]).read_text())
    if list(figures.get("runtimes", {})) != list(runtimes.names()):
        return None  # built before a runtime was registered (or after one was removed)
    for derived in ("passed", "reference", "runtimes"):
        figures.pop(derived, None)
    report = ParityReport(**(figures | {"atol": atol}))
    return report if report.passed else None


@contextmanager
def staged(final: Path) -> Iterator[Path]:
    """A fresh staging directory that replaces ``final`` only when the body completes."""
    staging = final.parent / f".staging-{final.name}-{os.getpid()}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as err:
        raise ServeoffError(
            f"cannot build into {final.parent}: {err.strerror or err}; choose another artifacts directory"
        ) from None
    try:
        yield staging
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        if final.exists():
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build_zoo_model(
    name: str,
    out: Path,
    *,
    seed: int = 0,
    atol: float = DEFAULT_ATOL,
    log: Log = print,
) -> BuildResult:
    """Train zoo model ``name`` in PyTorch, port it to Keras, export, package and check parity."""
    arch = zoo.architecture(name)
    content_hash = zoo_hash(arch, seed)
    final = out / name
    if built_source(final) == "user":
        raise ServeoffError(
            f"{final} holds a model of your own built under the zoo name {name!r}; a zoo build never "
            "replaces it: move it away (and rebuild yours under another --name) or use another artifacts "
            "directory"
        )
    report = cached(final, content_hash, atol)
    if report is not None:
        log(f"{name}: up to date ({report.summary()})")
        return BuildResult(name, final, True, report)

    with staged(final) as staging:
        layout = ArtifactLayout(staging, name)
        started = time.perf_counter()
        data = arch.dataset(seed)
        torch.manual_seed(seed)
        log(f"{name}: training {arch.training.steps} steps in PyTorch")
        module = train(arch.torch_module(), data, arch.training, seed)
        export_torchscript(module, data.x_heldout[:2], layout.torchscript)
        log(f"{name}: porting the weights to Keras and exporting the SavedModel")
        model = arch.keras_model()
        arch.port_weights(module, model)
        export_savedmodel(model, arch.input, layout.savedmodel)
        report = check_parity(name, layout, data.x_heldout, atol, log)
        built = build_runtimes(name, layout, module, data.x_heldout, atol, log)
        write_parity(layout, report, built)
        packaged = package_for_servers(layout, arch.input)
        np.save(layout.samples, data.x_heldout[:SAMPLES_KEPT])
        write_manifest(
            layout,
            source="zoo",
            content_hash=content_hash,
            input_spec=arch.input,
            packaged=packaged,
            output={"name": OUTPUT_NAME, "dtype": "float32", "shape": [arch.num_classes]},
            details={"description": arch.description, "config": arch.config(), "seed": seed},
            built=built,
        )
        log(f"{name}: built in {time.perf_counter() - started:.0f} s")
    return BuildResult(name, final, False, report)


def build_user_model(
    name: str,
    torchscript: Path,
    savedmodel: Path,
    sample_inputs: Path,
    out: Path,
    *,
    atol: float = DEFAULT_ATOL,
    log: Log = print,
) -> BuildResult:
    """Package a user's TorchScript file and SavedModel and check that they compute the same function."""
    final = check_user_name(name, out)
    samples = load_samples(sample_inputs)
    for path, what in ((torchscript, "TorchScript file"), (savedmodel, "SavedModel directory")):
        if not path.exists():
            raise ServeoffError(f"{what} {path} does not exist")
    content_hash = user_hash(name, torchscript, savedmodel, sample_inputs)
    report = cached(final, content_hash, atol)
    if report is not None:
        log(f"{name}: up to date ({report.summary()})")
        return BuildResult(name, final, True, report)

    tf_runner = SavedModelRunner(savedmodel)
    input_spec = user_input_spec(tf_runner, samples, savedmodel)
    torch_runner = TorchScriptRunner(torchscript)
    try:
        torch_runner.predict(samples[:1])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ServeoffError(
            f"TorchScript {torchscript} rejects the sample inputs {list(samples.shape)}: {first}"
        ) from None

    with staged(final) as staging:
        layout = ArtifactLayout(staging, name)
        layout.torchscript.parent.mkdir(parents=True)
        shutil.copyfile(torchscript, layout.torchscript)
        shutil.copytree(savedmodel, layout.savedmodel)
        report = check_parity(name, layout, samples, atol, log)
        built = build_runtimes(name, layout, None, samples, atol, log)
        write_parity(layout, report, built)
        packaged = package_for_servers(layout, input_spec)
        np.save(layout.samples, samples[:SAMPLES_KEPT])
        write_manifest(
            layout,
            source="user",
            content_hash=content_hash,
            input_spec=input_spec,
            packaged=packaged,
            output={
                "name": tf_runner.output.name,
                "dtype": tf_runner.output.dtype,
                "shape": report.output_shape[1:],
            },
            details={"torchscript": str(torchscript), "savedmodel": str(savedmodel)},
            built=built,
        )
    return BuildResult(name, final, False, report)


def check_user_name(name: str, out: Path) -> Path:
    """Where your own model ``name`` is built; one clear line for a name it must not take."""
    check_name(name)
    if zoo.is_zoo_name(name):
        raise ServeoffError(
            f"--name {name!r} is a zoo model's name; give your own model another name, so that its results "
            "are never labelled as the zoo model's"
        )
    final = out / name
    if built_source(final) == "zoo":
        raise ServeoffError(f"{final} holds a zoo build; give your own model another --name or --out")
    return final


def ready_layout(name: str, out: Path, log: Log = print) -> ArtifactLayout:
    """The artifacts of ``name`` in ``out``: a zoo model (built now when missing or outdated), or your own
    model as `serveoff build --name` built it; one clear line when it is neither."""
    zoo.check_servable(name, out)
    if name in zoo.ZOO:
        return ArtifactLayout(build_zoo_model(name, out, log=log).root, name)
    return ArtifactLayout(out / name, name)


def load_samples(path: Path) -> np.ndarray:
    """Sample inputs from a ``.npy`` file: a batch ``[n, ...]`` of float32 or int32."""
    save = "save one batch with numpy.save into a .npy file"
    try:
        with open(path, "rb") as f:
            magic = f.read(len(NPY_MAGIC))
        if magic != NPY_MAGIC:
            kind = "an .npz archive, not one array" if magic.startswith(b"PK") else "not a .npy file"
            raise ServeoffError(f"sample inputs {path} are {kind}; {save}")
        samples = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ServeoffError(f"cannot read sample inputs {path}: {err}; {save}") from None
    if samples.ndim < 1 or len(samples) == 0:
        raise ServeoffError(
            f"sample inputs {path} hold no batch; save an array of shape [n, ...] with n >= 1"
        )
    if samples.dtype.name not in ("float32", "int32"):
        raise ServeoffError(
            f"sample inputs {path} are {samples.dtype.name}; "
            "the wire formats are float32 and int32, so cast them"
        )
    return samples


def user_input_spec(runner: SavedModelRunner, samples: np.ndarray, savedmodel: Path) -> InputSpec:
    """The wire input of a user model; its SavedModel signature must accept the samples unchanged."""
    sig = runner.input
    shape_fits = len(sig.shape) == samples.ndim and all(
        want is None or want == have for want, have in zip(sig.shape, samples.shape, strict=True)
    )
    if sig.dtype != samples.dtype.name or not shape_fits:
        shown = [d if d is not None else -1 for d in sig.shape]
        raise ServeoffError(
            f"SavedModel {savedmodel} takes {sig.dtype} {shown} as {sig.name!r}, but the sample inputs are "
            f"{samples.dtype.name} {list(samples.shape)}; the two artifacts must take the same input"
        )
    return InputSpec(sig.name, sig.dtype, tuple(samples.shape[1:]))


def user_hash(name: str, torchscript: Path, savedmodel: Path, sample_inputs: Path) -> str:
    """The content hash of a user model: every input file's bytes, the code and the versions."""
    digest = hashlib.sha256(name.encode())
    files = [torchscript, sample_inputs, *sorted(p for p in savedmodel.rglob("*") if p.is_file())]
    for path in files:
        digest.update(
            str(path.relative_to(savedmodel) if path.is_relative_to(savedmodel) else path.name).encode()
        )
        digest.update(path.read_bytes())
    digest.update(code_fingerprint().encode())
    digest.update(json.dumps(library_versions(), sort_keys=True).encode())
    return digest.hexdigest()


def check_parity(
    name: str, layout: ArtifactLayout, inputs: np.ndarray, atol: float, log: Log
) -> ParityReport:
    """Compare the written TorchScript and SavedModel on ``inputs``; their figures, or fail."""
    report = compare(TorchScriptRunner(layout.torchscript), SavedModelRunner(layout.savedmodel), inputs, atol)
    if not report.passed:
        raise ParityError(
            f"{name}: parity failed: {report.summary()}; the artifacts compute different functions"
        )
    log(f"{name}: parity holds: {report.summary()}")
    return report


def write_parity(layout: ArtifactLayout, report: ParityReport, built: RuntimeBuild) -> None:
    """parity.json: TorchScript vs SavedModel at the top level, then every runtime against TorchScript."""
    doc = report.to_json() | {"reference": "torch:inprocess", "runtimes": built.parity_json()}
    layout.parity.write_text(json.dumps(doc, indent=2) + "\n")


def package_for_servers(layout: ArtifactLayout, input_spec: InputSpec) -> dict[str, str]:
    """Every registered server's packaging step on the built artifacts; the files they wrote, relative to
    the artifact directory, for the manifest."""
    files = {}
    for name in SERVERS:
        for key, path in server_class(name).package(layout, input_spec).items():
            files[key] = str(path.relative_to(layout.root))
    return files


def write_manifest(
    layout: ArtifactLayout,
    *,
    source: str,
    content_hash: str,
    input_spec: InputSpec,
    packaged: dict[str, str],
    output: dict,
    details: dict,
    built: RuntimeBuild,
) -> None:
    """Write manifest.json last: its presence marks a complete build."""
    manifest = {
        "schema": SCHEMA,
        "name": layout.name,
        "source": source,
        "content_hash": content_hash,
        "input": input_spec.to_json(),
        "output": output,
        "versions": library_versions(),
        "files": layout.files() | packaged | built.files(layout),
        "runtimes": built.manifest_json(layout),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    } | details
    layout.manifest.write_text(json.dumps(manifest, indent=2) + "\n")
