"""Export a checkpoint to TorchScript and ONNX (fp32, int8, fp16), verified before anything is replaced.

    python -m export --checkpoint checkpoints/mnist_cnn.pt                  # files land beside the .pt
    python -m export --checkpoint checkpoints/mnist_cnn.pt --out-dir /tmp/exports
    python -m export --checkpoint checkpoints/mnist_cnn.pt --check          # only report missing/stale

For `<stem>.pt` it writes <stem>.torchscript.pt, <stem>.onnx, <stem>.int8.onnx and <stem>.fp16.onnx.
All four are written to temporary files, verified against eager PyTorch on the checkpoint's own test set
(see export/verify.py), and renamed into place only if every check passes; otherwise the previous files
stay untouched and the exit status is 1.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from engine.checkpoint import CheckpointError, atomic_path, build_model, file_sha256, load_checkpoint
from engine.data import default_data_dir, load_dataset, to_input
from export.convert import CALIBRATION_METHODS, convert_fp16, export_onnx, export_torchscript, quantize_int8
from export.runtime import artifact_paths, check_exports, export_metadata
from export.verify import VerificationError, verify_exports


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint written by engine.train (required)")
    p.add_argument("--out-dir", default=None, help="where to write the exports (default: the checkpoint's folder)")
    p.add_argument("--data-dir", default=None,
                   help="dataset root for calibration and verification images "
                        "(default: $DIGITS_DATA_DIR, else ./data)")
    p.add_argument("--calibration-images", type=int, default=1000,
                   help="training images used to calibrate int8 activations (default: 1000)")
    p.add_argument("--calibration", choices=CALIBRATION_METHODS, default="minmax",
                   help="int8 calibration method (default: minmax)")
    p.add_argument("--max-test-images", type=int, default=0,
                   help="verify on only the first N test images, for quick trials; the int8 accuracy "
                        "check is meant for the full set (default: 0 = all)")
    p.add_argument("--speed-repeats", type=int, default=20,
                   help="timed runs for the int8 vs fp32 speed line; 0 skips it (default: 20)")
    p.add_argument("--check", action="store_true",
                   help="do not export; report missing or stale exports and exit 1 if there are any "
                        "(default: off)")
    return p.parse_args(argv)


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path | None = None, data_dir: str | None = None,
                      calibration_images: int = 1000, calibration: str = "minmax", max_test_images: int = 0,
                      speed_repeats: int = 20, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Write and verify every export of `checkpoint`; returns {kind: path}. Raises VerificationError."""
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
    # Calibration images come from the training split only, so the test accuracy below stays honest.
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:calibration_images]
    calib_x = to_input(train.images[pick], spec.mean, spec.std).numpy()
    n = max_test_images or len(test)
    test_x = to_input(test.images[:n], spec.mean, spec.std).numpy()
    test_labels = test.labels[:n].numpy()

    final = artifact_paths(checkpoint, out_dir)
    log(f"exporting {checkpoint} ({ckpt['model_name']}, {dataset}, sha256 {sha[:12]}) to {final['onnx'].parent}")
    with contextlib.ExitStack() as stack:
        # Temporary files beside the targets; renamed over them only if the whole block succeeds.
        tmp = {kind: stack.enter_context(atomic_path(path)) for kind, path in final.items()}
        steps = [
            ("TorchScript", lambda: export_torchscript(model, spec, export_metadata(ckpt, sha, "fp32"),
                                                       tmp["torchscript"])),
            ("ONNX fp32", lambda: export_onnx(model, spec, export_metadata(ckpt, sha, "fp32"), tmp["onnx"])),
            (f"ONNX int8 ({calibration} calibration on {len(calib_x)} training images)",
             lambda: quantize_int8(tmp["onnx"], calib_x, export_metadata(ckpt, sha, "int8"), tmp["int8"],
                                   calibration)),
            ("ONNX fp16", lambda: convert_fp16(tmp["onnx"], export_metadata(ckpt, sha, "fp16"), tmp["fp16"])),
        ]
        for what, step in steps:
            t0 = time.perf_counter()
            step()
            log(f"  wrote {what} in {time.perf_counter() - t0:.1f} s")
        log(f"verifying against eager PyTorch on {len(test_x)} {dataset} test images:")
        verify_exports(model, spec, tmp, test_x, test_labels, speed_repeats=speed_repeats, log=log)
    for kind, path in final.items():
        log(f"  {kind:11s} {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return final


def main(argv=None) -> int:
    args = get_args(argv)
    try:
        if args.check:
            problems = check_exports(args.checkpoint, args.out_dir)
            print("\n".join(problems) if problems else f"exports of {args.checkpoint} are present and up to date")
            return 1 if problems else 0
        export_checkpoint(args.checkpoint, args.out_dir, args.data_dir, args.calibration_images,
                          args.calibration, args.max_test_images, args.speed_repeats)
    except VerificationError as e:
        print(f"{e}\nnothing was replaced: the previous exports (if any) are unchanged", file=sys.stderr)
        return 1
    except (CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
