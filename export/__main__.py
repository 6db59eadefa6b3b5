"""Export a checkpoint to TorchScript and ONNX (fp32, int8, fp16), verified before anything is replaced.

    python -m export --checkpoint checkpoints/mnist_cnn.pt                  # files land beside the .pt
    python -m export --checkpoint checkpoints/mnist_cnn.pt --out-dir /tmp/exports
    python -m export --checkpoint checkpoints/mnist_cnn.pt --check          # only report missing/stale

For `<stem>.pt` it writes <stem>.torchscript.pt, <stem>.onnx, <stem>.int8.onnx and <stem>.fp16.onnx.
All four are written to temporary files and verified against eager PyTorch on the checkpoint's own test set
(see export/verify.py). Each stands on its own: the ones that pass are renamed into place; an int8 or fp16
variant that fails its checks is refused (not written, its old file removed, the reason printed and kept in
<stem>.refused.json so the app says why it does not offer it). Only a failing fp32 export (TorchScript,
ONNX) refuses everything, leaves the previous files untouched and exits 1; --strict does that for any
failing variant.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from engine.checkpoint import CheckpointError, atomic_path, build_model, file_sha256, load_checkpoint
from engine.data import default_data_dir, load_dataset, to_input
from export.convert import (CALIBRATION_METHODS, convert_fp16, export_onnx, export_pt2, export_torchscript,
                            quantize_int8)
from export.runtime import (artifact_paths, check_exports, export_metadata, pt2_path, refusals_path,
                            refused_exports)
from export.verify import VerificationError, failed_kinds, verify_exports


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint written by engine.train (required)")
    p.add_argument("--out-dir", default=None, help="where to write the exports (default: the checkpoint's folder)")
    p.add_argument("--data-dir", default=None,
                   help="dataset root for calibration and verification images "
                        "(default: $DIGITS_DATA_DIR, else ./data)")
    p.add_argument("--calibration-images", type=int, default=1000,
                   help="training images used to calibrate int8 activations; a smaller training set "
                        "calibrates on all of its images (default: 1000)")
    p.add_argument("--calibration", choices=CALIBRATION_METHODS, default="minmax",
                   help="int8 calibration method (default: minmax)")
    p.add_argument("--max-test-images", type=int, default=0,
                   help="verify on only the first N test images, for quick trials; the int8/fp16 "
                        "accuracy check's tolerance widens on fewer images (default: 0 = all)")
    p.add_argument("--speed-repeats", type=int, default=20,
                   help="timed runs for the int8 vs fp32 speed line; 0 skips it (default: 20)")
    p.add_argument("--pt2", action="store_true",
                   help="also write <stem>.pt2: torch.export + AOTInductor native code for this machine's CPU, "
                        "verified like the others; takes tens of seconds to compile (default: off)")
    p.add_argument("--strict", action="store_true",
                   help="all or nothing: refuse every export when any variant (int8, fp16) fails its "
                        "checks, leaving the previous files untouched (default: off, a failing int8 or fp16 "
                        "variant is refused on its own)")
    p.add_argument("--check", action="store_true",
                   help="do not export; report missing or stale exports and exit 1 if there are any "
                        "(default: off)")
    return p.parse_args(argv)


FP32_KINDS = ("torchscript", "onnx")  # without these nothing can be served: the export fails


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path | None = None, data_dir: str | None = None,
                      calibration_images: int = 1000, calibration: str = "minmax", max_test_images: int = 0,
                      speed_repeats: int = 20, strict: bool = False, pt2: bool = False,
                      log: Callable[[str], None] = print) -> dict[str, Path]:
    """Write and verify every export of `checkpoint`; returns {kind: path} of the files written.

    Each variant stands on its own: one that fails its checks (or its conversion) is refused, its
    previous file removed and the reason recorded in <stem>.refused.json, while the others are written.
    Raises VerificationError (nothing replaced) when an fp32 export fails, or with strict=True when any does.
    """
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)  # first: its errors say how to get a checkpoint
    sha = file_sha256(checkpoint)
    model, spec = build_model(ckpt)
    dataset = ckpt.get("config", {}).get("dataset")
    if not dataset:
        raise CheckpointError(f"{checkpoint} does not record its dataset (config['dataset']), so there are no "
                              f"matching images to calibrate and verify with; re-train it with engine.train")

    data_dir = data_dir or default_data_dir()
    train = load_dataset(dataset, data_dir, train=True, download=False)
    test = load_dataset(dataset, data_dir, train=False, download=False)
    # Calibration images come from the training split only, so the test accuracy below stays honest; a
    # small data set calibrates on all of them.
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:calibration_images]
    calib_x = to_input(train.images[pick], spec.mean, spec.std).numpy()
    n = max_test_images or len(test)
    test_x = to_input(test.images[:n], spec.mean, spec.std).numpy()
    test_labels = test.labels[:n].numpy()

    final = artifact_paths(checkpoint, out_dir)
    if pt2:
        final["pt2"] = pt2_path(checkpoint, out_dir)
    log(f"exporting {checkpoint} ({ckpt['model_name']}, {dataset}, sha256 {sha[:12]}) to {final['onnx'].parent}")
    final["onnx"].parent.mkdir(parents=True, exist_ok=True)
    # Written into a temporary folder beside the targets, each renamed into place (one step, same file
    # system) only once everything is verified; a crash or a refusal leaves the previous files as they were.
    with tempfile.TemporaryDirectory(prefix=".export-", dir=final["onnx"].parent) as tmp_dir:
        tmp = {kind: Path(tmp_dir) / path.name for kind, path in final.items()}
        steps = [
            ("torchscript", "TorchScript", lambda: export_torchscript(model, spec, export_metadata(ckpt, sha, "fp32"),
                                                                      tmp["torchscript"])),
            ("onnx", "ONNX fp32", lambda: export_onnx(model, spec, export_metadata(ckpt, sha, "fp32"), tmp["onnx"])),
            ("int8", f"ONNX int8 ({calibration} calibration on {len(calib_x)} training images)",
             lambda: quantize_int8(tmp["onnx"], calib_x, export_metadata(ckpt, sha, "int8"), tmp["int8"],
                                   calibration)),
            ("fp16", "ONNX fp16", lambda: convert_fp16(tmp["onnx"], export_metadata(ckpt, sha, "fp16"), tmp["fp16"])),
        ] + ([("pt2", f"torch.export + AOTInductor package for {torch.backends.cpu.get_cpu_capability()}",
               lambda: export_pt2(model, spec, export_metadata(ckpt, sha, "fp32"), tmp["pt2"]))] if pt2 else [])
        refused: dict[str, str] = {}
        for kind, what, step in steps:
            if kind in ("int8", "fp16") and "onnx" in refused:
                refused[kind] = "not converted: the fp32 ONNX export it is made from failed"
                continue
            t0 = time.perf_counter()
            try:
                step()
            except Exception as e:  # a converter's failure refuses that variant, never the others
                if kind in FP32_KINDS:
                    raise
                refused[kind] = f"conversion failed: {type(e).__name__}: {e}"
                log(f"  could not write {what}: {refused[kind]}")
                continue
            log(f"  wrote {what} in {time.perf_counter() - t0:.1f} s")
        log(f"verifying against eager PyTorch on {len(test_x)} {dataset} test images:")
        checks = verify_exports(model, spec, {k: p for k, p in tmp.items() if k not in refused}, test_x,
                                test_labels, speed_repeats=speed_repeats, log=log)
        for kind, failed in failed_kinds(checks).items():
            refused.setdefault(kind, "; ".join(f"{c.name}: {c.detail}" for c in failed))
        if strict and refused or any(kind in refused for kind in FP32_KINDS):
            raise VerificationError("export verification failed:\n" +
                                "\n".join(f"  [FAIL] {kind}: {why}" for kind, why in refused.items()))
        for kind, path in final.items():
            if kind in refused:  # an old file would be stale, or would claim a check it no longer passes
                path.unlink(missing_ok=True)
            else:
                os.replace(tmp[kind], path)
    record = refusals_path(checkpoint, out_dir)
    if refused:
        with atomic_path(record) as t:
            t.write_text(json.dumps({"checkpoint_sha256": sha, "refused": refused}, indent=1) + "\n")
    else:
        record.unlink(missing_ok=True)
    for kind, path in final.items():
        if kind in refused:
            log(f"  {kind:11s} REFUSED, not written (the app will not offer it): {refused[kind]}")
        else:
            log(f"  {kind:11s} {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return {kind: path for kind, path in final.items() if kind not in refused}


def main(argv=None) -> int:
    args = get_args(argv)
    try:
        if args.check:
            problems = check_exports(args.checkpoint, args.out_dir)
            for kind, why in refused_exports(args.checkpoint, args.out_dir).items():
                print(f"{kind}: refused at export, not offered: {why}")
            print("\n".join(problems) if problems else f"exports of {args.checkpoint} are present and up to date")
            return 1 if problems else 0
        written = export_checkpoint(args.checkpoint, args.out_dir, args.data_dir, args.calibration_images,
                                    args.calibration, args.max_test_images, args.speed_repeats, args.strict,
                                    args.pt2)
    except VerificationError as e:
        print(f"{e}\nnothing was replaced: the previous exports (if any) are unchanged", file=sys.stderr)
        return 1
    except (CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    refused = sorted((set(artifact_paths(args.checkpoint)) | ({"pt2"} if args.pt2 else set())) - set(written))
    print(f"refused {', '.join(refused)} (see above); the other exports passed their checks" if refused
          else "all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
