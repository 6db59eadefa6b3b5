"""Checkpoints: one self-describing file, written atomically, loaded without running pickled code.

    save_checkpoint(path, payload)          # temp file + fsync + rename: never half-written
    ckpt = load_checkpoint(path)            # weights_only=True: a pickled payload is refused
    model, spec = load_model(path)          # rebuilds the model from the checkpoint alone
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from engine.models import InputSpec, create_model

FORMAT = "digits-engine/1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says why and what to do."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success rename it over `path` in one step.

    If the block raises (or the process dies) the previous file at `path` is untouched and the
    temporary file is removed (or, after a kill, left as an ignored `*.tmp`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result should look like any written file
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        with contextlib.suppress(OSError):  # make the rename itself durable
            dfd = os.open(path.parent, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    payload = {"format": FORMAT, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
        # Read it back the way every consumer will; a payload that weights_only loading refuses (a stray
        # Python object) fails here, before it replaces a good checkpoint.
        torch.load(tmp, map_location="cpu", weights_only=True)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with "
                              f"`python -m engine.train --out {path}`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refused to load {path}: it contains pickled Python objects beyond tensors and plain "
            f"containers, which could run code when loaded. Only load checkpoints you trust; files "
            f"written by engine.train never contain such objects. ({str(e).splitlines()[0]})") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or corrupt ({e}). Re-train it or "
            f"restore it from a copy.") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a checkpoint written by engine.train (expected format {FORMAT!r}); "
            f"a bare state_dict or another project's file cannot be used here.")
    return ckpt


def lineage(ckpt: dict) -> list[dict]:
    """Every epoch that made a checkpoint's weights: those of the checkpoint it was fine-tuned from (engine.train
    --init), then its own, numbered on from them."""
    before = (ckpt.get("init") or {}).get("history", [])
    offset = before[-1]["epoch"] if before else 0
    return before + [{**h, "epoch": h["epoch"] + offset} for h in ckpt["history"]]


def build_model(ckpt: dict) -> tuple[torch.nn.Module, InputSpec]:
    model = create_model(ckpt["model_name"], **ckpt["model_args"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, InputSpec.from_dict(ckpt["input_spec"])


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, InputSpec]:
    return build_model(load_checkpoint(path))
