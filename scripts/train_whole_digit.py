"""Train the number segmentation's verifier (engine/preprocess/verify.py): is a candidate piece of a line one
whole digit? Only MNIST's training digits are used (the last 5,000 held out to report the verifier's own
accuracy); the test digits, which scripts/eval_numbers.py writes numbers with, are never seen.

    python scripts/train_whole_digit.py                     # writes engine/preprocess/whole_digit.pt and .onnx
    python scripts/train_whole_digit.py --export-only       # the .onnx again, from the .pt as it is
    python scripts/train_whole_digit.py --lines 300 --epochs 1 --out /tmp/w.pt   # a quick dry run

Lines of 1-4 training digits are written by engine.render's line writer, their neighbours touching or
overlapping (gap -12 % to +2 % of a digit cell) or apart (5-50 %), at random sizes and stroke weights; the
writer also gives each digit's own ink (where neighbours overlap, the ink is both digits'). Every candidate
piece that engine.preprocess.segment offers on a line is a sample, a digit's share of it counted on the ink it
shares with no neighbour (where two overlap, a cut gives the shared ink to one side, and a '1' drawn into a
9's stem is whole on either): one whole digit when it holds at least 90 % of one digit's ink, its ink is at
most 10 % not that digit's, and it holds at most 35 % of any other digit's; not one when it holds under 75 %
of every digit's, over 20 % of its ink is not that digit's, or it holds half of another digit; in between,
left out. Two nets are trained so (--members), each on its own seed's lines, and their log-odds averaged:
one net's answers on the pieces that decide touching digits swing with its seed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python scripts/train_whole_digit.py` from anywhere
from engine.data import default_data_dir, load_dataset  # noqa: E402
from engine.preprocess.frame import INK_THRESHOLD  # noqa: E402
from engine.preprocess.segment import candidates  # noqa: E402
from engine.preprocess.verify import WEIGHTS, Verifier, WholeDigitNet, export_onnx, view  # noqa: E402
from engine.render import _line_of_digits  # noqa: E402

HELD_OUT = 5000  # the last training digits: the verifier's validation set


def whole(piece, own: np.ndarray, alone: np.ndarray) -> float | None:
    """1.0 when the piece is one whole digit, 0.0 when it is not, None when it is too close to call. own: each
    digit's ink (digits, H, W), True where it is; where digits overlap, the ink is both digits'. alone: the
    part of own that no neighbour shares. A digit's share of a piece is counted on that: where two overlap, a
    cut gives the shared ink to one side, and both sides may still be whole digits (a '1' drawn into a 9's
    stem)."""
    x0, y0 = piece.origin
    h, w = piece.ink.shape
    mine = piece.ink > INK_THRESHOLD
    inside = own[:, y0:y0 + h, x0:x0 + w] & mine           # each digit's ink in the piece
    held = inside.sum((1, 2))
    if held.max() == 0:
        return 0.0
    k = int(held.argmax())
    cover = (alone[:, y0:y0 + h, x0:x0 + w] & mine).sum((1, 2)) / np.maximum(alone.sum((1, 2)), 1)
    stray = 1 - held[k] / mine.sum()                       # the piece's ink that is not digit k's
    other = np.delete(cover, k).max(initial=0.0)           # the most of another digit's ink it holds
    if cover[k] >= 0.9 and stray <= 0.1 and other <= 0.35:
        return 1.0
    if cover[k] < 0.75 or stray > 0.2 or other >= 0.5:
        return 0.0
    return None


def samples(images: np.ndarray, n_lines: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n_lines random lines of the given 28x28 digits -> (views (n, 2, 32, 48), labels (n,))."""
    views, labels = [], []
    for _ in range(n_lines):
        digits = [images[i] for i in rng.choice(len(images), int(rng.integers(1, 5)))]
        gap = (-0.12, 0.02) if rng.random() < 0.7 else (0.05, 0.5)
        line, planes = _line_of_digits(digits, 96, gap, rng, float(rng.uniform(0.25, 0.55)), own=True)
        s = rng.uniform(0.5, 1.3)  # the digits' size in the ink map varies with the canvas and the writer
        size = (max(1, round(line.shape[1] * s)), max(1, round(line.shape[0] * s)))
        line = np.pad(cv2.resize(line, size, interpolation=cv2.INTER_AREA), 8)
        own = np.stack([np.pad(cv2.resize(p, size, interpolation=cv2.INTER_AREA), 8) > INK_THRESHOLD for p in planes])
        alone = own & (own.sum(0) == 1)  # each digit's ink that no neighbour shares
        blobs, digit_h = candidates(line)
        for blob in blobs:
            for piece in blob.pieces.values():
                label = whole(piece, own, alone)
                if label is not None:
                    views.append(view(line, piece.ink, piece.origin, piece.box, digit_h))
                    labels.append(label)
    return np.stack(views), np.array(labels, np.float32)


def train(net: WholeDigitNet, x: torch.Tensor, y: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor,
          epochs: int) -> None:
    """AdamW with a one-cycle learning rate, batches of 256; the held-out accuracy after each pass."""
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * ((len(y) + 255) // 256)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(y))
        for i in range(0, len(y), 256):
            b = order[i:i + 256]
            loss = F.binary_cross_entropy_with_logits(net(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.inference_mode():
            acc = float(((net(vx) > 0).float() == vy).float().mean())
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, held-out accuracy {acc:.2%}")


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=8000, help="training lines (default: 8000)")
    p.add_argument("--epochs", type=int, default=6, help="passes over the samples (default: 6)")
    p.add_argument("--seed", type=int, default=0, help="line writing and initialisation seed of the first member; "
                   "the next members take the next seeds (default: 0)")
    p.add_argument("--members", type=int, default=2, help="nets trained alike, their log-odds averaged (default: 2)")
    p.add_argument("--data-dir", default=default_data_dir(), help="folder holding MNIST/raw (default: $DIGITS_DATA_DIR or data)")
    p.add_argument("--out", type=Path, default=WEIGHTS, help=f"weights file (default: {WEIGHTS}); its ONNX "
                   "export is written beside it (.onnx)")
    p.add_argument("--export-only", action="store_true", help="only export the weights file to ONNX again")
    args = p.parse_args(argv)
    if args.export_only:
        export_onnx(args.out, args.out.with_suffix(".onnx"))
        print(f"wrote {args.out.with_suffix('.onnx')}")
        return 0.0
    split = load_dataset("mnist", args.data_dir, train=True, download=False)
    images = split.images[:, 0].numpy()
    t0 = time.perf_counter()
    verifier, held_out = Verifier(args.members), []
    for k in range(args.members):  # each member: its own seed's lines and initialisation (as one run with
        seed = args.seed + k  # --members 1 --seed <seed> would train it)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        x, y = samples(images[:-HELD_OUT], args.lines, rng)
        vx, vy = samples(images[-HELD_OUT:], max(50, args.lines // 10), rng)
        verifier.members[k] = net = WholeDigitNet()
        print(f"member {k + 1} (seed {seed}): {len(y)} training pieces ({y.mean():.0%} whole digits), "
              f"{len(vy)} held out, written in {time.perf_counter() - t0:.0f} s")
        held_out.append((torch.from_numpy(vx), torch.from_numpy(vy)))
        train(net, torch.from_numpy(x), torch.from_numpy(y), *held_out[-1], args.epochs)
    verifier.eval()
    with torch.inference_mode():
        acc = float(torch.cat([((verifier(vx) > 0).float() == vy).float() for vx, vy in held_out]).mean())
    print(f"the {args.members} members averaged: held-out accuracy {acc:.2%}")
    torch.save({k: v.half() for k, v in verifier.state_dict().items()}, args.out)  # fp16: half the file
    export_onnx(args.out, args.out.with_suffix(".onnx"))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB) and its ONNX export "
          f"in {time.perf_counter() - t0:.0f} s")
    return acc


if __name__ == "__main__":
    main()
