"""Measure whole-number reading the way users hit it: 2-8-digit numbers made of real MNIST test digits, drawn
as sketches with the digits apart, as sketches whose neighbours touch or overlap slightly, and as dark ink on
photographed paper (engine.render.render_number), sent through the live API with gradio_client.

    python app.py &                                            # the app under test
    python scripts/eval_numbers.py --n 1000                    # 1000 numbers per kind, ONNX Runtime
    python scripts/eval_numbers.py --n 200 --in-process        # no app: engine.reading + ONNX Runtime here
    python scripts/eval_numbers.py --single-digits 40 --seed 5 # single digits still read as single digits?

A number is right when the whole label (every digit, in order, none missing or extra) is right. Sketches go
to /predict_sketch as the sketchpad sends them, photos to /predict_upload as JPEG files.

--single-digits N checks the other side, in-process: N single digits per kind of engine.render's real-world
drawings and photos, each read by engine.reading.read and by preprocess() alone; every reading must be the
single-digit one (the same 28x28, the same class probabilities), as a lone digit that the segmentation splits
would be answered as a number.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python scripts/eval_numbers.py` from anywhere
from engine.data import load_dataset  # noqa: E402
from engine.render import KINDS, NUMBER_KINDS, render_number  # noqa: E402
from scripts.eval_drawings import (add_run_args, figures, make_and_read, make_requests, read_back,  # noqa: E402
                                   write_value, written)


def make_number_requests(split, kinds, n: int, seed: int, folder: Path) -> list[tuple[str, str, str, object]]:
    """n numbers of 2-8 random test digits per kind -> [(kind, true number, api_name, argument)]."""
    requests = []
    for kind in kinds:
        rng = np.random.default_rng([seed, 100 + NUMBER_KINDS.index(kind)])  # the same numbers in any --kinds
        for j in range(n):
            idx = rng.choice(len(split), size=int(rng.integers(2, 9)))
            truth = "".join(split.class_names[int(split.labels[i])] for i in idx)
            value = render_number([split.images[i, 0].numpy() for i in idx], kind, rng)
            requests.append((kind, truth, *write_value(value, folder, f"{kind}_{j}")))
    return requests


def check_single_digits(args) -> dict:
    """--single-digits: how many single digits read() answers exactly as preprocess() does."""
    from engine.preprocess import EmptyInputError, preprocess
    from engine.reading import read
    from export.runtime import load_runtime

    runtime = load_runtime(args.checkpoint, args.backend)
    split = load_dataset("mnist", args.data_dir, train=False, download=False)
    same, empty, differ = 0, 0, []
    with tempfile.TemporaryDirectory(prefix="eval_") as tmp:
        for kind, label, api_name, arg in make_requests(split, KINDS, args.single_digits, args.seed, Path(tmp)):
            image = read_back(api_name, arg)
            try:
                x, preview = preprocess(image, runtime.spec)
            except EmptyInputError:
                empty += 1  # "no digit found": read() must say the same
                try:
                    r = read(image, runtime.spec, runtime.predict_proba)
                    differ.append((kind, label, r.label))
                except EmptyInputError:
                    pass
                continue
            r = read(image, runtime.spec, runtime.predict_proba)
            if len(r.frames) == 1 and np.array_equal(r.frames[0], preview) and np.array_equal(r.probs, runtime.predict_proba(x)):
                same += 1
            else:
                differ.append((kind, label, r.label))
    for kind, label, got in differ:
        print(f"  {kind} {label}: read as {got!r}, not as one digit")
    n = len(KINDS) * args.single_digits
    print(f"{n} single digits ({', '.join(KINDS)}; seed {args.seed}): {same} read as the single digit, {empty} no "
          f"digit found both ways, {len(differ)} read otherwise")
    return {"single_digits": n, "same": same, "no_digit": empty, "differ": len(differ)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="numbers per kind (default: 100; the README figures use 1000)")
    p.add_argument("--kinds", nargs="+", default=list(NUMBER_KINDS), choices=NUMBER_KINDS,
                   help=f"default: {' '.join(NUMBER_KINDS)}")
    p.add_argument("--single-digits", type=int, default=0, metavar="N",
                   help="instead: check N single digits per kind in-process (default: 0, no check)")
    add_run_args(p)
    args = p.parse_args(argv)
    if args.single_digits:
        return written(args, check_single_digits(args))

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
