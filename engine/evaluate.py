"""Evaluate a checkpoint on its dataset's test set: accuracy, per-class precision/recall/F1, confusion matrix.

    python -m engine.evaluate --checkpoint checkpoints/mnist_cnn.pt --data-dir ../shared/data --json out.json
    python -m engine.evaluate --checkpoint checkpoints/mnist_cnn.pt --plot-dir checkpoints/   # PNGs too
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from engine.checkpoint import build_model, lineage, load_checkpoint
from engine.data import default_data_dir, load_dataset
from engine.metrics import format_report, plot_confusion_matrix, plot_history
from engine.train import evaluate_split


def evaluate_checkpoint(checkpoint: str, data_dir: str | None = None, dataset: str | None = None,
                        device: str = "cpu", download: bool = True) -> dict:
    ckpt = load_checkpoint(checkpoint)
    model, spec = build_model(ckpt)
    model.to(device)
    dataset = dataset or ckpt["config"]["dataset"]
    test = load_dataset(dataset, data_dir or ckpt["config"].get("data_dir"), train=False, download=download)
    if test.class_names != spec.class_names:
        raise SystemExit(f"dataset {dataset!r} has classes {test.class_names}, but the checkpoint was trained "
                         f"on {spec.class_names}; pass the dataset it was trained on")
    summary, loss = evaluate_split(model, test.images.to(device), test.labels.to(device), spec)
    return {"checkpoint": str(checkpoint), "dataset": dataset, "model": ckpt["model_name"],
            "test_loss": round(loss, 5), **summary}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint written by engine.train")
    p.add_argument("--data-dir", default=default_data_dir(),
                   help="folder with MNIST/ and FashionMNIST/ (default: $DIGITS_DATA_DIR or ./data)")
    p.add_argument("--dataset", default=None, help="override the dataset recorded in the checkpoint")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--json", default=None, help="write the metrics to this JSON file")
    p.add_argument("--plot-dir", default=None,
                   help="write <stem>_confusion.png and <stem>_curve.png into this folder")
    p.add_argument("--no-download", action="store_true", help="never download; fail if the data is missing")
    args = p.parse_args(argv)

    result = evaluate_checkpoint(args.checkpoint, args.data_dir, args.dataset, args.device,
                                 download=not args.no_download)
    print(format_report(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot_dir:
        stem = Path(args.checkpoint).stem
        out = Path(args.plot_dir)
        out.mkdir(parents=True, exist_ok=True)
        ckpt = load_checkpoint(args.checkpoint)
        names = ckpt["input_spec"]["class_names"]
        plot_confusion_matrix(result["confusion_matrix"], names, str(out / f"{stem}_confusion.png"),
                              f"{stem}: {result['accuracy']:.2f}% on {result['num_images']} test images")
        init = ckpt.get("init")
        plot_history(lineage(ckpt), str(out / f"{stem}_curve.png"), f"{stem} training" + (
            f" (fine-tuned from epoch {init['history'][-1]['epoch'] + 1}, augment {ckpt['config']['augment']})"
            if init else ""))
        print(f"wrote {out / (stem + '_confusion.png')} and {out / (stem + '_curve.png')}")
    return result


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
