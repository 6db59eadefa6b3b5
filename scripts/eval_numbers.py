"""Measure whole-number reading the way users hit it: 2-8-digit numbers made of real MNIST test digits, drawn
as sketches with the digits apart, as sketches whose neighbours touch or overlap slightly, and as dark ink on
photographed paper (engine.render.render_number), sent through the live API with gradio_client.

    python app.py &                                            # the app under test
    python scripts/eval_numbers.py --n 1000                    # 1000 numbers per kind, ONNX Runtime
    python scripts/eval_numbers.py --n 200 --in-process        # no app: engine.reading + ONNX Runtime here

A number is right when the whole label (every digit, in order, none missing or extra) is right. Sketches go
to /predict_sketch as the sketchpad sends them, photos to /predict_upload as JPEG files.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python scripts/eval_numbers.py` from anywhere
from engine.render import NUMBER_KINDS, render_number  # noqa: E402
from scripts.eval_drawings import add_run_args, figures, make_and_read, write_value, written  # noqa: E402


def make_number_requests(split, kinds, n: int, seed: int, folder: Path) -> list[tuple[str, str, str, object]]:
    """n numbers of 2-8 random test digits per kind -> [(kind, true number, api_name, argument)]."""
    requests = []
    for k, kind in enumerate(kinds):
        rng = np.random.default_rng([seed, 100 + k])
        for j in range(n):
            idx = rng.choice(len(split), size=int(rng.integers(2, 9)))
            truth = "".join(split.class_names[int(split.labels[i])] for i in idx)
            value = render_number([split.images[i, 0].numpy() for i in idx], kind, rng)
            requests.append((kind, truth, *write_value(value, folder, f"{kind}_{j}")))
    return requests


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="numbers per kind (default: 100; the README figures use 1000)")
    p.add_argument("--kinds", nargs="+", default=list(NUMBER_KINDS), choices=NUMBER_KINDS,
                   help=f"default: {' '.join(NUMBER_KINDS)}")
    add_run_args(p)
    args = p.parse_args(argv)

    requests, predicted, retries, (t0, t1, t2) = make_and_read(args, make_number_requests)
    result = figures(args, requests, predicted, retries, (t0, t1, t2))
    result["digit_count_right"] = {k: sum(len(p) == len(r[1]) for r, p in zip(requests, predicted) if r[0] == k)
                                   for k in args.kinds}
    for kind, v in result["per_kind"].items():
        print(f"{kind:9s} {v['correct']:5d}/{v['n']:<5d} {100 * v['accuracy']:6.2f} %   (digit count right "
              f"{result['digit_count_right'][kind]}/{v['n']})")
    print(f"{len(requests)} numbers read in {t2 - t1:.0f} s ({args.backend}, {result['url']}, "
          f"{len(retries)} resent after a lost event stream)")
    return written(args, result)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
