"""One interface over every backend: eager PyTorch, TorchScript, ONNX Runtime (fp32, int8, CUDA fp16).

    from export.runtime import load_runtime, available_backends
    rt = load_runtime("checkpoints/mnist_cnn.pt", "ONNX Runtime int8")   # built once, thread-safe
    probs = rt.predict_proba(x)          # x: float32 (N, 1, 28, 28) normalised -> (N, classes)

Every export records the SHA-256 of the checkpoint it was made from (ONNX `metadata_props`, TorchScript
`_extra_files`). Loading an export re-hashes the checkpoint and refuses a stale or mismatched file with
the command that rebuilds it, so an old export is never silently served.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from engine.checkpoint import build_model, file_sha256, load_checkpoint
from engine.models import InputSpec

BACKEND_NAMES = ["PyTorch", "TorchScript", "ONNX Runtime", "ONNX Runtime int8",
                 "ONNX Runtime CUDA", "ONNX Runtime CUDA fp16", "PyTorch AOTInductor"]
CUDA_BACKENDS = ("ONNX Runtime CUDA", "ONNX Runtime CUDA fp16")
# backend -> (artifact kind, execution provider)
_ONNX_BACKENDS = {"ONNX Runtime": ("onnx", "cpu"), "ONNX Runtime int8": ("int8", "cpu"),
                  "ONNX Runtime CUDA": ("onnx", "cuda"), "ONNX Runtime CUDA fp16": ("fp16", "cuda")}
ARTIFACT_SUFFIXES = {"torchscript": ".torchscript.pt", "onnx": ".onnx", "int8": ".int8.onnx",
                     "fp16": ".fp16.onnx"}
PT2_SUFFIX = ".pt2"  # optional (python -m export --pt2): AOTInductor native code for one CPU family
REFUSALS_SUFFIX = ".refused.json"  # <stem>.refused.json: the variants the last export refused, and why
TORCHSCRIPT_META = "export_meta.json"  # name of the metadata entry inside a TorchScript archive
INPUT_NAME, OUTPUT_NAME = "image", "logits"

_PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
              # TensorRT builds an engine for each new input shape on its first call: slow once, warm-up absorbs it
              "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}


class StaleExportError(RuntimeError):
    """An export that no longer matches its checkpoint (or says it belongs to another one)."""


class MissingExportError(RuntimeError):
    """The export file for a backend does not exist yet."""


class RefusedExportError(MissingExportError):
    """The export was refused by `python -m export` (it failed its checks here): the backend is not offered."""


def rebuild_command(checkpoint: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> str:
    return f"python -m export --checkpoint {checkpoint}" + (f" --out-dir {out_dir}" if out_dir else "")


def artifact_paths(checkpoint: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Where the exports of `<dir>/<stem>.pt` live: `<out_dir or dir>/<stem>.<kind suffix>`."""
    checkpoint = Path(checkpoint)
    out_dir = Path(out_dir) if out_dir is not None else checkpoint.parent
    return {kind: out_dir / f"{checkpoint.stem}{suffix}" for kind, suffix in ARTIFACT_SUFFIXES.items()}


def pt2_path(checkpoint: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    checkpoint = Path(checkpoint)
    return (Path(out_dir) if out_dir is not None else checkpoint.parent) / f"{checkpoint.stem}{PT2_SUFFIX}"


def read_pt2_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata AOTInductor stored in a .pt2 package (ours plus AOTI_CPU_ISA etc.), read from the zip
    archive without loading its native library (which could crash on a CPU it was not built for)."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith("wrapper_metadata.json")]
        if len(names) != 1:
            raise ValueError(f"{path} is not an AOTInductor package (no single *wrapper_metadata.json)")
        return json.loads(z.read(names[0]))


# ISAs AOTInductor records (torch._inductor.cpu_vec_isa: space-separated, "AVX512 AVX512_VNNI" on a CPU with
# VNNI, "AVX512 AVX512_VNNI AMX_TILE" with AMX) -> the CPU features each part needs (torch.cpu names)
_ISA_NEEDS = {"AVX2": ("avx2", "fma3"), "AVX512": ("avx512_f", "avx512_bw", "avx512_vl", "avx512_dq"),
              "AVX512_VNNI": ("avx512_vnni",), "AMX_TILE": ("amx_tile",)}


def pt2_isa_problem(meta: dict[str, str]) -> str | None:
    """Why this CPU cannot run a package built for meta's AOTI_CPU_ISA, or None if it can. A package
    compiled with AVX-512 on a Xeon dies with SIGILL on an AVX2-only CPU: check before loading it."""
    import platform
    isa, machine = meta.get("AOTI_CPU_ISA", ""), meta.get("AOTI_MACHINE", "")
    if machine and machine != platform.machine():
        return f"it was built for {machine}, this machine is {platform.machine()}"
    if not isa or isa.upper() in ("", "DEFAULT", "NONE"):
        return None
    parts = isa.upper().split()
    if any(part not in _ISA_NEEDS for part in parts):
        return f"it was built for the {isa} instruction set, which this check does not know"
    needs = [f for part in parts for f in _ISA_NEEDS[part]]
    caps = torch.cpu.get_capabilities()
    lacking = [f for f in needs if not caps.get(f)]
    if lacking:
        return f"it was built for {isa} and this CPU lacks {', '.join(lacking)}"
    return None


def refusals_path(checkpoint: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    checkpoint = Path(checkpoint)
    out_dir = Path(out_dir) if out_dir is not None else checkpoint.parent
    return out_dir / f"{checkpoint.stem}{REFUSALS_SUFFIX}"


def refused_exports(checkpoint: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                    checkpoint_sha256: str | None = None) -> dict[str, str]:
    """{kind: reason} for the variants that `python -m export` refused to write for this exact checkpoint
    (an int8 file that missed its accuracy check on this CPU, say). A refused variant is not offered; it
    is not a problem to report as missing. A record made for another checkpoint version is ignored."""
    path = refusals_path(checkpoint, out_dir)
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    sha = checkpoint_sha256 or file_sha256(checkpoint)
    return dict(record.get("refused", {})) if record.get("checkpoint_sha256") == sha else {}


# ----------------------------------------------------------------------------------------------------
# Metadata: what every export records, and the check that it still belongs to its checkpoint


def export_metadata(ckpt: dict, checkpoint_sha256: str, precision: str) -> dict[str, str]:
    """String key/values stored in each export (ONNX metadata_props accept only strings)."""
    spec = InputSpec.from_dict(ckpt["input_spec"])
    return {
        "model_name": ckpt["model_name"],
        "model_args": json.dumps(ckpt["model_args"], sort_keys=True),
        "class_names": json.dumps(spec.class_names),
        "mean": repr(float(spec.mean)),
        "std": repr(float(spec.std)),
        "input_size": json.dumps(list(spec.shape)),  # [channels, height, width]
        "dataset": str(ckpt.get("config", {}).get("dataset", "")),
        "checkpoint_sha256": checkpoint_sha256,
        "precision": precision,
        "torch_version": torch.__version__,
    }


PRECISION = {"torchscript": "fp32", "onnx": "fp32", "int8": "int8", "fp16": "fp16", "pt2": "fp32"}  # by artifact kind


def metadata_problems(meta: dict[str, str], ckpt: dict, checkpoint_sha256: str, kind: str) -> list[str]:
    """Why `meta` (read from the `kind` export) does not describe `ckpt`; [] when it does."""
    expected = export_metadata(ckpt, checkpoint_sha256, precision=PRECISION[kind])
    problems = []
    if meta.get("checkpoint_sha256") != checkpoint_sha256:
        problems.append(f"made from a checkpoint with SHA-256 {meta.get('checkpoint_sha256', 'unknown')[:12]}..., "
                        f"but the checkpoint now has {checkpoint_sha256[:12]}... (it changed since the export)")
    for key in ("model_name", "model_args", "class_names", "mean", "std", "input_size", "precision"):
        if meta.get(key) != expected[key]:
            problems.append(f"{key} is {meta.get(key)!r} in the export, but the checkpoint needs {expected[key]!r}")
    return problems


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata recorded in an ONNX or TorchScript export."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx
        model = onnx.load(str(path), load_external_data=False)
        return {p.key: p.value for p in model.metadata_props}
    return load_torchscript(path)[1]


_TS_LOCK = threading.Lock()


def load_torchscript(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict[str, str]]:
    """A TorchScript export in eval mode, and the metadata saved with it."""
    extra = {TORCHSCRIPT_META: ""}
    # torch.jit is deprecated in favour of torch.export, but TorchScript is still what this backend ships.
    with _TS_LOCK, warnings.catch_warnings():  # loading is rare; the lock keeps it simple to reason about
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated", category=FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module.eval(), json.loads(extra[TORCHSCRIPT_META] or "{}")


def _checked(path: Path, kind: str, meta: dict[str, str], ckpt: dict, sha: str, checkpoint: Path,
             out_dir) -> None:
    problems = metadata_problems(meta, ckpt, sha, kind)
    if problems:
        raise StaleExportError(f"refusing stale export {path}: " + "; ".join(problems) +
                               f". Rebuild it with `{rebuild_command(checkpoint, out_dir)}`.")


def check_exports(checkpoint: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[str]:
    """Human-readable problems with the exports of `checkpoint` (missing, stale, mismatched); [] if fine.
    out_dir: where the exports are (default: beside the checkpoint)."""
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    sha = file_sha256(checkpoint)
    refused = refused_exports(checkpoint, out_dir, sha)
    problems = []
    for kind, path in artifact_paths(checkpoint, out_dir).items():
        if not path.is_file():
            if kind not in refused:  # a refused variant is simply not offered (see refused_exports)
                problems.append(f"{kind}: {path} is missing")
            continue
        try:
            meta = read_metadata(path)
        except Exception as e:  # unreadable file: report it as a problem instead of crashing the check
            problems.append(f"{kind}: {path} cannot be read ({type(e).__name__}: {e})")
            continue
        problems += [f"{kind}: {path} {p}" for p in metadata_problems(meta, ckpt, sha, kind)]
    pt2 = pt2_path(checkpoint, out_dir)
    if pt2.is_file():  # optional; when present it must match the checkpoint like the others
        try:
            meta = read_pt2_metadata(pt2)
            problems += [f"pt2: {pt2} {p}" for p in metadata_problems(meta, ckpt, sha, "pt2")]
        except Exception as e:  # unreadable file: report it as a problem instead of crashing the check
            problems.append(f"pt2: {pt2} cannot be read ({type(e).__name__}: {e})")
    if problems:
        problems.append(f"rebuild with `{rebuild_command(checkpoint, out_dir)}`")
    return problems


# ----------------------------------------------------------------------------------------------------
# ONNX Runtime sessions


_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}


def ort_session(path: str | os.PathLike, provider: str = "cpu", threads: int = 0, opt_level: str = "all",
                spin: bool = True):
    """An InferenceSession with deliberate options; raises if the requested provider does not really run.

    threads: intra-op threads (0 = ONNX Runtime's default, one per physical core).
    opt_level: graph optimisation level, one of disable/basic/extended/all.
    spin: whether idle worker threads spin, waiting for the next run (ONNX Runtime's default: the fastest
    back-to-back runs). A server whose runs are a few among other work turns it off: spinning threads take
    the cores from the request's own Python work in between.
    """
    import onnxruntime as ort

    if provider not in _PROVIDERS:
        raise ValueError(f"provider must be one of {sorted(_PROVIDERS)}, got {provider!r}")
    if opt_level not in _OPT_LEVELS:
        raise ValueError(f"opt_level must be one of {list(_OPT_LEVELS)}, got {opt_level!r}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1  # these graphs are chains: no parallel branches to run
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[opt_level])
    session = ort.InferenceSession(str(path), sess_options=so, providers=_PROVIDERS[provider])
    # onnxruntime-gpu lists CUDA even without a GPU and then quietly falls back to CPU: check what runs.
    wanted = _PROVIDERS[provider][0]
    if session.get_providers()[0] != wanted:
        raise RuntimeError(f"{wanted} is not usable on this machine (session runs on "
                           f"{session.get_providers()}); pick a CPU backend instead")
    return session


@functools.cache
def cuda_works() -> bool:
    """True only when a CUDA GPU is present and ONNX Runtime really runs a model on it."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers() or not torch.cuda.is_available():
        return False
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=_PROVIDERS["cuda"])
        session.run(None, {"x": np.ones(1, np.float32)})
    except Exception:  # a broken CUDA install (missing libraries, driver) means no CUDA backend here
        return False
    return session.get_providers()[0] == "CUDAExecutionProvider"


def available_backends() -> list[str]:
    """The backends usable on this machine, in BACKEND_NAMES order."""
    return [b for b in BACKEND_NAMES if b not in CUDA_BACKENDS or cuda_works()]


# ----------------------------------------------------------------------------------------------------
# Runtimes


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Runtime:
    """One loaded backend. Built once and shared: predict_* may be called from many threads at once."""

    def __init__(self, name: str, spec: InputSpec, checkpoint: Path, path: Path):
        self.name, self.spec, self.checkpoint, self.path = name, spec, checkpoint, path

    def _check_input(self, x) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        want = self.spec.shape
        if x.ndim != 4 or tuple(x.shape[1:]) != want or x.shape[0] < 1:
            raise ValueError(f"{self.name} expects a float32 batch of shape (N, {', '.join(map(str, want))}) "
                             f"with N >= 1, got {x.shape}; use engine.preprocess.preprocess() to make one")
        return x

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, C, H, W) normalised -> float32 logits (N, classes)."""
        return self._run(self._check_input(x))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.predict_logits(x))

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.path})"


class TorchRuntime(Runtime):
    """Eager PyTorch or TorchScript. Inference on a module in eval mode only reads its weights, so
    concurrent calls are safe."""

    def __init__(self, module, **kw):
        super().__init__(**kw)
        self.module = module

    def _run(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module(torch.from_numpy(x)).float().numpy()


class OrtRuntime(Runtime):
    """An ONNX Runtime session; InferenceSession.run is thread-safe."""

    def __init__(self, session, **kw):
        super().__init__(**kw)
        self.session = session

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0].astype(np.float32, copy=False)


def load_runtime(checkpoint: str | os.PathLike, backend: str, threads: int = 0, opt_level: str = "all",
                 out_dir: str | os.PathLike | None = None, spin: bool = True) -> Runtime:
    """Load `backend` for `checkpoint`. PyTorch runs the checkpoint itself; every other backend loads its
    export (from `out_dir`, default beside the checkpoint) after checking it was made from this exact
    checkpoint. threads/opt_level/spin go to ort_session (ONNX Runtime backends only)."""
    if backend not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKEND_NAMES)}")
    if backend in CUDA_BACKENDS and not cuda_works():
        raise RuntimeError(f"{backend} needs a working CUDA GPU, and this machine has none; "
                           f"available here: {', '.join(available_backends())}")
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    spec = InputSpec.from_dict(ckpt["input_spec"])
    common = dict(name=backend, spec=spec, checkpoint=checkpoint)
    if backend == "PyTorch":
        model, _ = build_model(ckpt)
        return TorchRuntime(model, path=checkpoint, **common)

    sha = file_sha256(checkpoint)
    if backend == "PyTorch AOTInductor":
        return _load_pt2(checkpoint, ckpt, sha, out_dir, common)
    kind = "torchscript" if backend == "TorchScript" else _ONNX_BACKENDS[backend][0]
    path = artifact_paths(checkpoint, out_dir)[kind]
    if not path.is_file():
        refused = refused_exports(checkpoint, out_dir, sha).get(kind)
        if refused:
            raise RefusedExportError(f"{backend} is not offered for {checkpoint.name}: the export refused "
                                     f"{path.name} ({refused})")
        raise MissingExportError(f"{backend} needs {path}, which does not exist; create it with "
                                 f"`{rebuild_command(checkpoint, out_dir)}`")
    if backend == "TorchScript":
        module, meta = load_torchscript(path)
        _checked(path, kind, meta, ckpt, sha, checkpoint, out_dir)
        return TorchRuntime(module, path=path, **common)

    provider = _ONNX_BACKENDS[backend][1]
    session = ort_session(path, provider=provider, threads=threads, opt_level=opt_level, spin=spin)
    _checked(path, kind, session.get_modelmeta().custom_metadata_map, ckpt, sha, checkpoint, out_dir)
    names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise StaleExportError(f"{path} has inputs/outputs {names}, expected ['{INPUT_NAME}'] -> "
                               f"['{OUTPUT_NAME}']; rebuild it with `{rebuild_command(checkpoint, out_dir)}`")
    return OrtRuntime(session, path=path, **common)


def _load_pt2(checkpoint: Path, ckpt: dict, sha: str, out_dir, common: dict) -> Runtime:
    path = pt2_path(checkpoint, out_dir)
    build = f"{rebuild_command(checkpoint, out_dir)} --pt2"
    if not path.is_file():
        raise RefusedExportError(f"PyTorch AOTInductor is not offered for {checkpoint.name}: {path.name} was "
                                 f"not built (it is optional; build it on this machine with `{build}`)")
    meta = read_pt2_metadata(path)
    isa = pt2_isa_problem(meta)
    if isa:  # loading it could kill the whole process with an illegal instruction
        raise RefusedExportError(f"PyTorch AOTInductor is not offered for {checkpoint.name}: {path.name} "
                                 f"cannot run on this CPU ({isa}); rebuild it here with `{build}`")
    problems = metadata_problems(meta, ckpt, sha, "pt2")
    if problems:
        raise StaleExportError(f"refusing stale export {path}: " + "; ".join(problems) +
                               f". Rebuild it with `{build}`.")
    # Loading goes through torch.utils.cpp_extension, which logs "No CUDA runtime is found" on a machine
    # without CUDA; nothing is compiled here, so that warning would only mislead.
    quiet = lambda record: "No CUDA runtime is found" not in record.getMessage()
    logging.getLogger("torch.utils.cpp_extension").addFilter(quiet)
    try:
        from torch._inductor import aoti_load_package
        module = aoti_load_package(str(path))
    finally:
        logging.getLogger("torch.utils.cpp_extension").removeFilter(quiet)
    return TorchRuntime(module, path=path, **common)
