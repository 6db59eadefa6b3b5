"""Measure the app's preprocessing the way users hit it: real MNIST test digits re-rendered as big thin-brush
sketches, dark-on-light JPEG photos and light-on-dark images, sent through the live API with gradio_client.

    python app.py &                                            # the app under test
    python scripts/eval_drawings.py --n 1000                   # 1000 digits per kind, ONNX Runtime
    python scripts/eval_drawings.py --n 200 --backend PyTorch --url http://127.0.0.1:7860/ --json out.json
    python scripts/eval_drawings.py --n 300 --in-process       # no app: engine.reading + ONNX Runtime here, quick
    python scripts/eval_drawings.py --n 1000 --images runs/eval_images  # render once, then read again quickly
    python scripts/eval_drawings.py --n 60 --blank --in-process  # pages with no digit: "no digit found" is right

Digits are drawn at random (seeded) from the MNIST test split; each kind uses its own random placement, size
and brush (engine.render). Sketches go to /predict_sketch as the sketchpad sends them (background, layers,
composite PNGs); photos go to /predict_upload as files (JPEGs keep their original compression).
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import sys
import tempfile
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python scripts/eval_drawings.py` from anywhere
from engine.data import default_data_dir, load_dataset, thin  # noqa: E402
from engine.render import KINDS, render  # noqa: E402


def write_request(digit_u8: np.ndarray, kind: str, rng: np.random.Generator, folder: Path, stem: str):
    """Render one digit and write it as the files the API takes; -> (api_name, first argument)."""
    return write_value(render(digit_u8, kind, rng), folder, stem)


def write_value(value, folder: Path, stem: str):
    """A rendered sketchpad value or image -> the files the API takes; -> (api_name, first argument)."""
    from gradio_client import handle_file

    if isinstance(value, dict):  # a sketchpad value
        files = {}
        for key, array in (("background", value["background"]), ("composite", value["composite"]),
                           *((f"layer{i}", a) for i, a in enumerate(value["layers"]))):
            path = folder / f"{stem}_{key}.png"
            Image.fromarray(array).save(path)
            files[key] = handle_file(str(path))
        layers = [files[k] for k in sorted(files) if k.startswith("layer")]
        return "/predict_sketch", {"background": files["background"], "layers": layers,
                                   "composite": files["composite"]}
    if value.format == "JPEG":
        path = folder / f"{stem}.jpg"
        value.save(path, "JPEG", quality="keep")  # the original quantisation tables: no second generation loss
    else:
        path = folder / f"{stem}.png"
        value.save(path)
    return "/predict_upload", handle_file(str(path))


def make_requests(split, kinds, n: int, seed: int, folder: Path) -> list[tuple[str, int, str, object]]:
    """n digits per kind -> [(kind, true label, api_name, argument)], deterministic for a seed."""
    requests = []
    for kind in kinds:
        rng = np.random.default_rng([seed, KINDS.index(kind)])  # a kind reads the same digits in any --kinds
        for j, i in enumerate(rng.choice(len(split), size=n, replace=False)):
            api_name, arg = write_request(split.images[i, 0].numpy(), kind, rng, folder, f"{kind}_{j}")
            requests.append((kind, int(split.labels[i]), api_name, arg))
    return requests


# The blank pages' random streams come after the digits' of the eight kinds there were when blank pages came
# (kept, so a kind's blank pages stay the same pages as kinds are added; a later kind's digits share a stream
# with an early kind's blank pages, which draw other things from it).
BLANK_STREAMS = 8
NO_DIGIT = "(no digit found)"  # what a request answered "no digit found ..." counts as: a wrong reading


def make_blank_requests(split, kinds, n: int, seed: int, folder: Path) -> list[tuple[str, str, str, object]]:
    """n pages per kind with no digit on them (engine.render's kind with an all-zero digit: the paper, its
    lines, light, table and noise) -> [(kind, NO_DIGIT, api_name, argument)]: the right answer is "no digit
    found"."""
    blank = np.zeros((28, 28), np.uint8)
    requests = []
    for kind in kinds:
        rng = np.random.default_rng([seed, BLANK_STREAMS + KINDS.index(kind)])
        requests += [(kind, NO_DIGIT, *write_request(blank, kind, rng, folder, f"blank_{kind}_{j}")) for j in range(n)]
    return requests


def run_requests(client, requests, backend: str, model: str = "mnist", workers: int = 4,
                 retries: list | None = None) -> list[str]:
    """The predicted label of every request, sent by `workers` concurrent callers.

    A request whose event stream the client lost (gradio_client raises CancelledError, seen on a heavily
    loaded machine) is sent again, at most twice; each resend is appended to `retries` so it is reported.
    """
    from gradio_client.exceptions import AppError

    def one(request):
        _, _, api_name, arg = request
        for attempt in range(3):
            try:
                label = client.predict(arg, backend, model, api_name=api_name)[0]
                return str(label["label"])
            except AppError as e:  # the app's answer to an image it found no digit in: read wrong
                if "no digit found" in str(e) or "draw something first" in str(e):
                    return NO_DIGIT
                raise
            except CancelledError:
                if attempt == 2:
                    raise
                if retries is not None:
                    retries.append(request[:3])

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, requests))


def request_files(api_name: str, arg) -> str | dict:
    """A request's files, as paths: the sketchpad value's (background, composite, layers) or the upload."""
    if api_name == "/predict_sketch":
        return {"background": arg["background"]["path"], "composite": arg["composite"]["path"],
                "layers": [a["path"] for a in arg["layers"]]}
    return arg["path"]


def read_back(api_name: str, arg):
    """A request's files read back as the API would receive them: a sketchpad value of arrays, or a path."""
    files = request_files(api_name, arg)
    if isinstance(files, str):
        return files
    return {k: (np.asarray(Image.open(v)) if isinstance(v, str) else [np.asarray(Image.open(p)) for p in v])
            for k, v in files.items()}


def run_in_process(requests, checkpoint: Path, backend: str) -> list[str]:
    """The same requests read without the app, the way the app reads them (engine.reading: a single digit
    exactly as preprocess() frames it, several as a number) with the backend in this process; the files are
    read back exactly as the API would receive them."""
    from engine.preprocess import EmptyInputError
    from engine.reading import read
    from export.runtime import load_runtime

    runtime = load_runtime(checkpoint, backend)
    out = []
    for _, _, api_name, arg in requests:
        try:
            out.append(read(read_back(api_name, arg), runtime.spec, runtime.predict_proba).label)
        except EmptyInputError:
            out.append(NO_DIGIT)
    return out


def summarise(requests, predicted: list[str]) -> dict:
    per_kind = {}
    for kind in dict.fromkeys(r[0] for r in requests):
        pairs = [(str(r[1]), p) for r, p in zip(requests, predicted) if r[0] == kind]
        right = sum(t == p for t, p in pairs)
        per_kind[kind] = {"n": len(pairs), "correct": right, "accuracy": right / len(pairs)}
    right = sum(v["correct"] for v in per_kind.values())
    return {"per_kind": per_kind, "overall": {"n": len(predicted), "correct": right,
                                              "accuracy": right / len(predicted)}}


def add_run_args(p: argparse.ArgumentParser) -> None:
    """The options shared with scripts/eval_numbers.py: where and how the requests are read."""
    p.add_argument("--url", default="http://127.0.0.1:7860/", help="the running app (default: http://127.0.0.1:7860/)")
    p.add_argument("--backend", default="ONNX Runtime", help="backend to ask for (default: ONNX Runtime)")
    p.add_argument("--model", default="mnist", help="model to ask for (default: mnist)")
    p.add_argument("--seed", type=int, default=0, help="digit choice and rendering seed (default: 0)")
    p.add_argument("--workers", type=int, default=4, help="concurrent API callers (default: 4)")
    p.add_argument("--auth", default=os.environ.get("DIGITS_APP_AUTH"),
                   help="USER:PASS if the app asks for a login (default: $DIGITS_APP_AUTH, else none)")
    p.add_argument("--data-dir", default=default_data_dir(), help="folder holding MNIST/raw (default: $DIGITS_DATA_DIR or data)")
    p.add_argument("--in-process", action="store_true",
                   help="read the images here (engine.reading + the backend) instead of through --url")
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/mnist_cnn.pt"),
                   help="with --in-process: the model (default: checkpoints/mnist_cnn.pt)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file (default: none)")
    p.add_argument("--images", type=Path,
                   help="keep the rendered requests in this folder and reuse them on a later run with the same kind, "
                        "--n and --seed (render once, read many times: another backend, another version of the app; "
                        "rendered again when engine/render.py or its thinning changed). Default: a temporary folder")


def kept_requests(make, split, kinds, n: int, seed: int, folder: Path) -> list:
    """make(split, kinds, n, seed, folder)'s requests, kept per kind in a subfolder of `folder` with a list of
    them: read back when that kind, n and seed were rendered there before by the same engine/render.py and its
    thinning (engine.data.thin), else rendered (a kind's requests follow from the seed and the kind alone, so
    kinds are kept apart)."""
    source = (ROOT / "engine" / "render.py").read_bytes() + inspect.getsource(thin).encode()
    renderer = hashlib.sha256(source).hexdigest()
    requests = []
    for kind in kinds:
        sub = folder / f"{make.__name__}_{kind}_n{n}_seed{seed}"
        listing = sub / "requests.json"
        if listing.exists() and json.loads(listing.read_text())["renderer"] == renderer:
            requests += [tuple(r) for r in json.loads(listing.read_text())["requests"]]
            continue
        sub.mkdir(parents=True, exist_ok=True)
        made = make(split, [kind], n, seed, sub)
        tmp = listing.with_suffix(".tmp")  # the listing last and whole: an interrupted run renders again
        tmp.write_text(json.dumps({"renderer": renderer, "requests": made}))
        tmp.replace(listing)
        requests += made
    return requests


def make_and_read(args, make):
    """Render args.n requests per kind with make(split, kinds, n, seed, folder) into a temporary folder (or
    reuse them from --images) and read them, through the app at args.url or with --in-process here ->
    (requests, predicted labels, resent requests, (start, rendered, read) times)."""
    split = load_dataset("mnist", args.data_dir, train=False, download=False)
    with tempfile.TemporaryDirectory(prefix="eval_") as tmp:
        t0 = time.perf_counter()
        if args.images:
            requests = kept_requests(make, split, args.kinds, args.n, args.seed, args.images)
        else:
            requests = make(split, args.kinds, args.n, args.seed, Path(tmp))
        t1 = time.perf_counter()
        retries = []
        if args.in_process:
            predicted = run_in_process(requests, args.checkpoint, args.backend)
        else:
            from gradio_client import Client

            auth = tuple(args.auth.split(":", 1)) if args.auth else None
            # only the labels are compared, so the output images stay on the server (in a 1000-per-kind run
            # that downloaded them, this client used more CPU than the app it measured)
            client = Client(args.url, auth=auth, verbose=False, download_files=False)
            predicted = run_requests(client, requests, args.backend, args.model, args.workers, retries)
        return requests, predicted, retries, (t0, t1, time.perf_counter())


def figures(args, requests, predicted: list[str], retries: list, times: tuple[float, float, float]) -> dict:
    """What a run measured (make_and_read's results), as written to --json."""
    t0, t1, t2 = times
    return {"url": "in-process" if args.in_process else args.url, "backend": args.backend, "model": args.model,
            "seed": args.seed, **summarise(requests, predicted), "render_s": round(t1 - t0, 1),
            "api_s": round(t2 - t1, 1), "requests_per_s": round(len(requests) / (t2 - t1), 2),
            "resent_after_lost_stream": len(retries)}


def written(args, result: dict) -> dict:
    """The figures, also written to --json when asked."""
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="digits per kind (default: 100; the README figures use 1000)")
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help=f"default: {' '.join(KINDS)}")
    p.add_argument("--blank", action="store_true",
                   help='pages with no digit instead (the paper, lines, light and table of each kind): right is '
                        '"no digit found"')
    add_run_args(p)
    args = p.parse_args(argv)

    if args.blank:
        for kind, why in (("strays", "its marks are placed beside the digit"),
                          ("cropped", "it is cut to the digit's ink")):
            if kind in args.kinds:
                print(f"{kind}: no blank page of this kind ({why})")
                args.kinds = [k for k in args.kinds if k != kind]
    make = make_blank_requests if args.blank else make_requests
    requests, predicted, retries, (t0, t1, t2) = make_and_read(args, make)
    result = figures(args, requests, predicted, retries, (t0, t1, t2))
    for kind, v in result["per_kind"].items():
        print(f"{kind:9s} {v['correct']:5d}/{v['n']:<5d} {100 * v['accuracy']:6.2f} %")
    o = result["overall"]
    print(f"{'overall':9s} {o['correct']:5d}/{o['n']:<5d} {100 * o['accuracy']:6.2f} %   ({args.backend}, "
          f"{len(requests)} API calls in {t2 - t1:.0f} s, {result['requests_per_s']} calls/s, "
          f"{len(retries)} resent after a lost event stream)")
    return written(args, result)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
