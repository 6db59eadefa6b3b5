"""Read the same real-world drawings with this checkout and with an earlier commit, and compare them digit by
digit: which drawings one version reads right and the other does not.

    python scripts/compare_readings.py --before 7096c86 --kinds sketch jpeg inverted --seeds 0 1 2 3
    python scripts/compare_readings.py --before HEAD~3 --n 300 --kinds photo --images runs/eval_images

Both sides read the very files scripts/eval_drawings.py sends the live API (engine.render of this checkout,
--n digits per kind and seed, kept in --images for another run), in-process:
- this checkout as the live API reads them (engine.reading, ONNX Runtime, checkpoints/mnist_cnn.pt);
- the earlier commit with its own code and its own shipped model: its engine/, export/ and checkpoints/ are
  taken with `git archive` into a temporary folder and run in a subprocess, with engine.reading where that
  commit has it, else its preprocess() and its ONNX model.

Why paired: a kind misreads one or two drawings in a thousand, so two separate runs cannot tell a change
from noise. On the same drawings only those read differently count, and McNemar's exact test says how
likely a split of them this lopsided is by chance (p, two-sided).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAKEN = ("engine", "export", "checkpoints")  # what the earlier commit reads with
MODEL = "mnist_cnn"


def read_with(tree: Path, requests: list, out: Path) -> None:
    """The subprocess: read the requests (scripts/eval_drawings.request_files of each) with the code and model in
    `tree` -> labels in `out`."""
    sys.path.insert(0, str(tree))
    import numpy as np
    from PIL import Image

    from engine.preprocess import EmptyInputError

    if (tree / "engine" / "reading.py").exists():
        from engine.reading import read
        from export.runtime import load_runtime

        runtime = load_runtime(tree / "checkpoints" / f"{MODEL}.pt", "ONNX Runtime")

        def label(value) -> str:
            return read(value, runtime.spec, runtime.predict_proba).label
    else:
        import onnxruntime as ort

        from engine.models import InputSpec
        from engine.preprocess import preprocess

        spec = InputSpec()
        session = ort.InferenceSession(str(tree / "checkpoints" / f"{MODEL}.onnx"), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def label(value) -> str:
            return spec.class_names[int(session.run(None, {name: preprocess(value, spec)[0]})[0].argmax())]

    def value(files):  # as eval_drawings.read_back: importing it would import this checkout's engine, not tree's
        if isinstance(files, str):
            return files
        load = lambda p: np.asarray(Image.open(p))  # noqa: E731
        return {"background": load(files["background"]), "composite": load(files["composite"]),
                "layers": [load(p) for p in files["layers"]]}

    labels = []
    for files in requests:
        try:
            labels.append(label(value(files)))
        except EmptyInputError:
            labels.append("(no digit found)")  # as scripts/eval_drawings.py counts it (NO_DIGIT)
    out.write_text(json.dumps(labels))


def checkout(rev: str, folder: Path) -> str:
    """`rev`'s engine/, export/ and checkpoints/ into `folder` -> its full commit hash."""
    git = lambda *a: subprocess.run(["git", "-C", str(ROOT), *a], check=True, capture_output=True).stdout  # noqa: E731
    try:
        commit = git("rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        raise SystemExit(f"--before {rev}: not a commit of this repository ({e}); name one from `git log`") from e
    with tarfile.open(fileobj=io.BytesIO(git("archive", "--format=tar", commit, *TAKEN))) as tar:
        tar.extractall(folder, filter="data")
    return commit


def mcnemar_p(b: int, c: int) -> float:
    """Two-sided exact McNemar test: how likely b against c (or more lopsided) among b + c discordant pairs
    when each is equally likely to go either way."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def compare(requests: list, now: list[str], before: list[str]) -> dict:
    """Per kind: right now, right before, and the drawings only one of them reads right (their indices in
    `requests`)."""
    kinds = {}
    for j, ((kind, truth, *_), a, b) in enumerate(zip(requests, now, before)):
        k = kinds.setdefault(kind, {"n": 0, "now": 0, "before": 0, "only_now": [], "only_before": []})
        k["n"] += 1
        k["now"] += a == str(truth)
        k["before"] += b == str(truth)
        if (a == str(truth)) != (b == str(truth)):
            k["only_now" if a == str(truth) else "only_before"].append(j)
    for k in kinds.values():
        k["p"] = mcnemar_p(len(k["only_now"]), len(k["only_before"]))
    return kinds


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", help="the earlier commit (a hash, tag or HEAD~N); required")
    p.add_argument("--kinds", nargs="+", default=["sketch", "jpeg", "inverted"],
                   help="engine.render kinds (default: sketch jpeg inverted, the kinds the app read before "
                        "real-world inputs)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="rendering seeds (default: 0)")
    p.add_argument("--n", type=int, default=1000, help="digits per kind and seed (default: 1000)")
    p.add_argument("--data-dir", default=None, help="folder holding MNIST/raw (default: $DIGITS_DATA_DIR or data)")
    p.add_argument("--images", type=Path, help="keep the rendered requests here, as eval_drawings.py --images "
                                                "does (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="also write the figures here (default: none)")
    p.add_argument("--read-with", nargs=3, help=argparse.SUPPRESS)  # the subprocess: TREE REQUESTS OUT
    args = p.parse_args(argv)
    if args.read_with:
        tree, requests, out = map(Path, args.read_with)
        return read_with(tree, json.loads(requests.read_text()), out)
    if not args.before:
        p.error("--before is required: the commit to compare this checkout with")

    sys.path.insert(0, str(ROOT))
    from engine.data import default_data_dir, load_dataset
    from scripts.eval_drawings import kept_requests, make_requests, request_files, run_in_process

    split = load_dataset("mnist", args.data_dir or default_data_dir(), train=False, download=False)
    with tempfile.TemporaryDirectory(prefix="compare_") as tmp:
        tmp = Path(tmp)
        folder = args.images or tmp / "images"
        requests, seeds = [], []
        for seed in args.seeds:
            made = kept_requests(make_requests, split, args.kinds, args.n, seed, folder)
            requests += made
            seeds += [seed] * len(made)
        commit = checkout(args.before, tmp / "before")
        listing = tmp / "requests.json"
        listing.write_text(json.dumps([request_files(api, arg) for *_, api, arg in requests]))
        subprocess.run([sys.executable, __file__, "--read-with", str(tmp / "before"), str(listing),
                        str(tmp / "before.json")], check=True, cwd=tmp)
        before = json.loads((tmp / "before.json").read_text())
        now = run_in_process(requests, ROOT / "checkpoints" / f"{MODEL}.pt", "ONNX Runtime")
    kinds = compare(requests, now, before)
    print(f"{len(requests)} drawings ({args.n} per kind and seed, seeds {' '.join(map(str, args.seeds))}); "
          f"now: this checkout; before: {commit[:7]}")
    print(f"{'kind':9s} {'now':>13s} {'before':>13s}  right only now / only before   p (McNemar)")
    for kind, k in kinds.items():
        print(f"{kind:9s} {k['now']:5d} {100 * k['now'] / k['n']:6.2f} % {k['before']:5d} {100 * k['before'] / k['n']:6.2f} %"
              f"  {len(k['only_now']):14d} / {len(k['only_before']):<12d} {k['p']:.3f}")
    for kind, k in kinds.items():
        for side in ("only_now", "only_before"):
            for j in k[side]:
                print(f"  {kind} seed {seeds[j]}: a {requests[j][1]}, read {now[j]!r} now and {before[j]!r} "
                      f"before ({'right now' if side == 'only_now' else 'right before'})")
    result = {"before": commit, "seeds": args.seeds, "n": args.n, "kinds": kinds}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
