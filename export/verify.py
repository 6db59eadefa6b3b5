"""Verification run on every export: structure, parity with eager PyTorch, dynamic batch, int8/fp16 accuracy.

    checks = verify_exports(model, spec, paths, test_x, test_labels)   # raises VerificationError on failure

Each check is one printed line saying what was compared, on how many images, and the numbers.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch

from engine.models import InputSpec
from export.benchmark import time_calls
from export.runtime import OrtRuntime, Runtime, TorchRuntime, load_torchscript, ort_session

LOGIT_TOL = 1e-4          # max |logit difference| against eager, TorchScript and ONNX Runtime fp32
ACCURACY_TOL_PP = 0.1     # int8 / fp16 top-1 accuracy within this many percentage points of fp32
PARITY_BATCHES = ((1, 32), (7, 35), (256, None))  # (batch size, images; None = all test images)
SPEED_BATCH = 256


class VerificationError(RuntimeError):
    pass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"  [{'ok' if self.ok else 'FAIL'}] {self.name}: {self.detail}"


def run_batched(rt: Runtime, x: np.ndarray, batch_size: int) -> np.ndarray:
    out = []
    for i in range(0, len(x), batch_size):
        batch = x[i:i + batch_size]
        logits = rt.predict_logits(batch)
        if logits.shape != (len(batch), len(rt.spec.class_names)):
            raise VerificationError(f"{rt.name} returned logits of shape {logits.shape} for a batch of "
                                    f"{len(batch)} images")
        out.append(logits)
    return np.concatenate(out)


def parity(name: str, ref: np.ndarray, out: np.ndarray, tol: float = LOGIT_TOL) -> Check:
    diff = float(np.abs(ref - out).max())
    agree = int((ref.argmax(1) == out.argmax(1)).sum())
    ok = diff <= tol and agree == len(ref)
    return Check(name, ok, f"{len(ref)} images, max |logit diff| {diff:.2e} (limit {tol:.0e}), "
                           f"top-1 identical {agree}/{len(ref)}")


def accuracy_check(name: str, labels: np.ndarray, fp32: np.ndarray, out: np.ndarray,
                   tol_pp: float = ACCURACY_TOL_PP) -> Check:
    """Top-1 accuracy within tol_pp of fp32. Below 1,000 images 0.1 pp is less than one image, so a
    difference of one image is allowed there (the shipped checks run on 10,000 images: 10 images)."""
    n = len(labels)
    correct32, correct = int((fp32.argmax(1) == labels).sum()), int((out.argmax(1) == labels).sum())
    allowed = max(1, int(n * tol_pp / 100 + 1e-9))
    agree = int((fp32.argmax(1) == out.argmax(1)).sum())
    diff = float(np.abs(fp32 - out).max())
    acc32, acc = 100 * correct32 / n, 100 * correct / n
    return Check(name, abs(correct - correct32) <= allowed,
                 f"{n} test images, top-1 accuracy {acc:.2f}% vs fp32 {acc32:.2f}% ({acc - acc32:+.2f} pp, "
                 f"limit +-{tol_pp} pp = {allowed} image{'s' if allowed > 1 else ''}), "
                 f"same top-1 as fp32 {agree}/{n}, max |logit diff| {diff:.3f}")


def verify_exports(model: torch.nn.Module, spec: InputSpec, paths: dict[str, Path], test_x: np.ndarray,
                   test_labels: np.ndarray, speed_repeats: int = 20,
                   log: Callable[[str], None] = print) -> list[Check]:
    """Check the files in `paths` (kinds torchscript/onnx/int8/fp16) against the eager `model`.

    test_x: float32 (N, C, H, W) normalised test images; test_labels: int (N,). Logs each check as it
    completes and raises VerificationError listing the failures at the end.
    """
    checks: list[Check] = []

    def add(check: Check) -> None:
        checks.append(check)
        log(str(check))

    for kind in ("onnx", "int8", "fp16"):
        proto = onnx.load(str(paths[kind]))
        opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        try:
            onnx.checker.check_model(proto, full_check=True)
            add(Check(f"onnx.checker full_check ({kind})", True, f"passed, opset {opset}"))
        except onnx.checker.ValidationError as e:
            add(Check(f"onnx.checker full_check ({kind})", False, str(e).splitlines()[0]))
    _raise_if_failed(checks)  # running an invalid graph would only add confusing errors

    common = dict(spec=spec, checkpoint=Path("-"))
    eager = TorchRuntime(model.eval(), name="PyTorch", path=Path("-"), **common)
    runtimes = {
        "TorchScript": TorchRuntime(load_torchscript(paths["torchscript"])[0], name="TorchScript",
                                    path=paths["torchscript"], **common),
        "ONNX Runtime": OrtRuntime(ort_session(paths["onnx"]), name="ONNX Runtime", path=paths["onnx"], **common),
    }
    int8 = OrtRuntime(ort_session(paths["int8"]), name="ONNX Runtime int8", path=paths["int8"], **common)
    # fp16 is meant for CUDA; ONNX Runtime's CPU provider runs it too, which is how it is verified here.
    fp16 = OrtRuntime(ort_session(paths["fp16"]), name="ONNX Runtime fp16 (on CPU)", path=paths["fp16"], **common)

    ref = run_batched(eager, test_x, 256)
    full = {}
    for name, rt in runtimes.items():
        for bs, n in PARITY_BATCHES:
            x = test_x[:n]
            out = run_batched(rt, x, bs)
            add(parity(f"{name} vs eager PyTorch, batch {bs}", ref[:len(x)], out))
            if n is None:
                full[name] = out

    for rt in (int8, fp16):  # the dynamic axis must work in the reduced-precision graphs too
        sizes = (1, 7, min(SPEED_BATCH, len(test_x)))  # a small folder dataset may have fewer than 256 test images
        shapes = [rt.predict_logits(test_x[:n]).shape for n in sizes]
        add(Check(f"{rt.name} dynamic batch", shapes == [(n, len(spec.class_names)) for n in sizes],
                  f"output shapes {shapes}"))
    add(accuracy_check("ONNX Runtime int8 accuracy", test_labels, full["ONNX Runtime"],
                       run_batched(int8, test_x, SPEED_BATCH)))
    add(accuracy_check("ONNX Runtime fp16 accuracy (CPU provider)", test_labels, full["ONNX Runtime"],
                       run_batched(fp16, test_x, SPEED_BATCH)))

    if speed_repeats > 0 and len(test_x) >= SPEED_BATCH:
        x = np.ascontiguousarray(test_x[:SPEED_BATCH])
        def median_ms(rt: Runtime) -> float:
            step = lambda: rt.predict_logits(x)
            time_calls(step, 0.0, 3)  # warm-up
            return 1000 * statistics.median(time_calls(step, 0.0, speed_repeats))

        ms32, ms8 = median_ms(runtimes["ONNX Runtime"]), median_ms(int8)
        log(f"  [info] speed at batch {SPEED_BATCH}, ONNX Runtime CPU, median of {speed_repeats}: "
            f"fp32 {ms32:.2f} ms ({SPEED_BATCH / ms32 * 1000:,.0f} img/s), int8 {ms8:.2f} ms "
            f"({SPEED_BATCH / ms8 * 1000:,.0f} img/s): int8 is {ms32 / ms8:.2f}x fp32")

    _raise_if_failed(checks)
    return checks


def _raise_if_failed(checks: list[Check]) -> None:
    failed = [c for c in checks if not c.ok]
    if failed:
        raise VerificationError("export verification failed:\n" + "\n".join(map(str, failed)))
