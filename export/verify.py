"""Verification run on every export: structure, parity with eager PyTorch, dynamic batch, int8/fp16 accuracy.

    checks = verify_exports(model, spec, paths, test_x, test_labels)   # failed_kinds(checks): what failed

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
ACCURACY_TOL_PP = 0.1     # int8 / fp16 may lose at most this much top-1 accuracy against fp32 ...
CONFIDENCE_Z = 1.96       # ... unless the test set is too small to tell (two-sided 95 % bound, see below)
MIN_AGREEMENT = 0.97      # and must give fp32's top-1 answer on at least this share of the test images
PARITY_BATCHES = ((1, 32), (7, 35), (256, None))  # (batch size, images; None = all test images)
SPEED_BATCH = 256


class VerificationError(RuntimeError):
    pass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    kind: str = ""  # the export it judges: torchscript, onnx, int8 or fp16

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


def parity(name: str, ref: np.ndarray, out: np.ndarray, tol: float = LOGIT_TOL, kind: str = "") -> Check:
    diff = float(np.abs(ref - out).max())
    agree = int((ref.argmax(1) == out.argmax(1)).sum())
    ok = diff <= tol and agree == len(ref)
    return Check(name, ok, f"{len(ref)} images, max |logit diff| {diff:.2e} (limit {tol:.0e}), "
                           f"top-1 identical {agree}/{len(ref)}", kind)


def accuracy_check(name: str, labels: np.ndarray, fp32: np.ndarray, out: np.ndarray,
                   tol_pp: float = ACCURACY_TOL_PP, z: float = CONFIDENCE_Z,
                   min_agreement: float = MIN_AGREEMENT, kind: str = "") -> Check:
    """Is a reduced-precision variant as accurate as fp32, as far as these test images can tell?

    Paired comparison on the same images (McNemar): only the images where exactly one of the two is
    right carry information. b = fp32 right and variant wrong, c = the reverse; the accuracy drop is
    (b - c) / n with standard error sqrt(b + c - (b - c)^2 / n) / n (+1 in the count so that a handful of
    disagreements never gives a zero-width bound). The variant fails when even the lower end of the 95 %
    confidence interval of its drop exceeds tol_pp, i.e. when the data show it is worse than allowed.
    On 10,000 images that is strict (a 0.3 pp drop from 50 flips fails); on 300 images a few flips
    are noise, and a fixed 0.1 pp (a third of an image) would refuse any model on any CPU.
    The variant must also agree with fp32's top-1 on at least min_agreement of the images.
    """
    n = len(labels)
    ok32, ok = fp32.argmax(1) == labels, out.argmax(1) == labels
    b, c = int((ok32 & ~ok).sum()), int((~ok32 & ok).sum())
    drop = 100 * (b - c) / n
    se = 100 * np.sqrt(max(b + c + 1 - (b - c) ** 2 / n, 0.0)) / n
    low = drop - z * se
    agree = int((fp32.argmax(1) == out.argmax(1)).sum())
    diff = float(np.abs(fp32 - out).max())
    acc32, acc = 100 * ok32.mean(), 100 * ok.mean()
    good = low <= tol_pp and agree >= min_agreement * n
    return Check(name, good,
                 f"{n} test images, top-1 accuracy {acc:.2f}% vs fp32 {acc32:.2f}% ({acc - acc32:+.2f} pp; "
                 f"{b} lost, {c} gained; drop's 95% lower bound {low:+.2f} pp, limit {tol_pp} pp), "
                 f"same top-1 as fp32 {agree}/{n} (limit {100 * min_agreement:.0f}%), "
                 f"max |logit diff| {diff:.3f}", kind)


def verify_exports(model: torch.nn.Module, spec: InputSpec, paths: dict[str, Path], test_x: np.ndarray,
                   test_labels: np.ndarray, speed_repeats: int = 20,
                   log: Callable[[str], None] = print) -> list[Check]:
    """Check the files in `paths` (kinds torchscript/onnx/int8/fp16/pt2) against the eager `model`.

    test_x: float32 (N, C, H, W) normalised test images; test_labels: int (N,). Logs each check as it
    completes and returns them all, each tagged with the kind it judges (see failed_kinds); it raises
    VerificationError only when the fp32 ONNX file cannot be checked at all. int8 and fp16 are judged
    against the fp32 ONNX file, so when that fails they are marked failed too.
    """
    checks: list[Check] = []

    def add(check: Check) -> None:
        checks.append(check)
        log(str(check))

    for kind in ("onnx", "int8", "fp16"):
        if kind not in paths:
            continue
        proto = onnx.load(str(paths[kind]))
        opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        try:
            onnx.checker.check_model(proto, full_check=True)
            add(Check(f"onnx.checker full_check ({kind})", True, f"passed, opset {opset}", kind))
        except onnx.checker.ValidationError as e:
            add(Check(f"onnx.checker full_check ({kind})", False, str(e).splitlines()[0], kind))
    if "onnx" in failed_kinds(checks):  # running an invalid graph would only add confusing errors
        return checks + [Check(f"{kind} not judged", False, "the fp32 ONNX file it is compared with failed", kind)
                         for kind in ("int8", "fp16") if kind in paths]
    valid = [k for k in paths if k not in failed_kinds(checks)]

    common = dict(spec=spec, checkpoint=Path("-"))
    eager = TorchRuntime(model.eval(), name="PyTorch", path=Path("-"), **common)
    runtimes = {"ONNX Runtime": ("onnx", OrtRuntime(ort_session(paths["onnx"]), name="ONNX Runtime",
                                                    path=paths["onnx"], **common))}
    if "pt2" in paths:  # its own verification is the parity below: batch 1, 7 and 256 (dynamic batch)
        runtimes["PyTorch AOTInductor"] = ("pt2", TorchRuntime(torch._inductor.aoti_load_package(str(paths["pt2"])),
                                                               name="PyTorch AOTInductor", path=paths["pt2"],
                                                               **common))
    if "torchscript" in paths:
        runtimes["TorchScript"] = ("torchscript", TorchRuntime(load_torchscript(paths["torchscript"])[0],
                                                               name="TorchScript", path=paths["torchscript"],
                                                               **common))
    reduced = {}
    if "int8" in valid:
        reduced["int8"] = OrtRuntime(ort_session(paths["int8"]), name="ONNX Runtime int8", path=paths["int8"],
                                     **common)
    if "fp16" in valid:
        # fp16 is meant for CUDA; ONNX Runtime's CPU provider runs it too, which is how it is verified here.
        reduced["fp16"] = OrtRuntime(ort_session(paths["fp16"]), name="ONNX Runtime fp16 (on CPU)",
                                     path=paths["fp16"], **common)

    ref = run_batched(eager, test_x, 256)
    full = {}
    for name, (kind, rt) in runtimes.items():
        for bs, n in PARITY_BATCHES:
            x = test_x[:n]
            out = run_batched(rt, x, bs)
            add(parity(f"{name} vs eager PyTorch, batch {bs}", ref[:len(x)], out, kind=kind))
            if n is None:
                full[name] = out
    if "onnx" in failed_kinds(checks):
        return checks + [Check(f"{kind} not judged", False, "the fp32 ONNX file it is compared with failed", kind)
                         for kind in reduced]

    for kind, rt in reduced.items():  # the dynamic axis must work in the reduced-precision graphs too
        sizes = (1, 7, min(SPEED_BATCH, len(test_x)))  # a small folder dataset may have fewer than 256 test images
        shapes = [rt.predict_logits(test_x[:n]).shape for n in sizes]
        add(Check(f"{rt.name} dynamic batch", shapes == [(n, len(spec.class_names)) for n in sizes],
                  f"output shapes {shapes}", kind))
        add(accuracy_check(f"{rt.name} accuracy", test_labels, full["ONNX Runtime"],
                           run_batched(rt, test_x, SPEED_BATCH), kind=kind))

    if speed_repeats > 0 and len(test_x) >= SPEED_BATCH and "int8" in reduced:
        x = np.ascontiguousarray(test_x[:SPEED_BATCH])
        def median_ms(rt: Runtime) -> float:
            step = lambda: rt.predict_logits(x)
            time_calls(step, 0.0, 3)  # warm-up
            return 1000 * statistics.median(time_calls(step, 0.0, speed_repeats))

        ms32, ms8 = median_ms(runtimes["ONNX Runtime"][1]), median_ms(reduced["int8"])
        log(f"  [info] speed at batch {SPEED_BATCH}, ONNX Runtime CPU, median of {speed_repeats}: "
            f"fp32 {ms32:.2f} ms ({SPEED_BATCH / ms32 * 1000:,.0f} img/s), int8 {ms8:.2f} ms "
            f"({SPEED_BATCH / ms8 * 1000:,.0f} img/s): int8 is {ms32 / ms8:.2f}x fp32")

    return checks


def failed_kinds(checks: list[Check]) -> dict[str, list[Check]]:
    """{kind: its failed checks} for every kind with at least one failure."""
    failed: dict[str, list[Check]] = {}
    for c in checks:
        if not c.ok:
            failed.setdefault(c.kind, []).append(c)
    return failed
