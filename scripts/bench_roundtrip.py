"""Time the app's round trip against a bare Gradio endpoint with the same inputs and outputs, in one run.

    python scripts/bench_roundtrip.py                  # starts both servers itself; 40 calls per endpoint and input
    python scripts/bench_roundtrip.py --n 100 --json roundtrip.json

What it measures: a whole `gradio_client` call (upload, queue, the function, the outputs written and
downloaded) on `/predict_upload` with a 12-megapixel phone JPEG and on `/predict_sketch` with a 560x560
drawing, against the app (`app.py`, ONNX Runtime backend, the mnist model) and against a bare Gradio app
whose endpoints take the same input components and return the same outputs without any work: the
outputs the app gave for the same inputs, computed once when it starts. The difference is what the app's
own work (preprocessing, the model, drawing the box) adds to a request. Calls alternate app, bare, app,
bare..., so background load hits both alike. Both servers run in their own processes; this one is the client.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BACKEND, MODEL = "ONNX Runtime", "mnist"


def make_inputs(folder: Path, seed: int = 0) -> dict[str, object]:
    """A 12 MP phone JPEG (as scripts/bench_preprocess.py makes it) and a 560x560 drawing (the sketchpad's
    background, one layer, composite as PNG files), both of a real MNIST test digit."""
    from engine.data import default_data_dir, load_dataset
    from bench_preprocess import phone_jpeg
    from engine.render import render

    split = load_dataset("mnist", default_data_dir(), train=False, download=False)
    digit = split.images[0, 0].numpy()
    rng = np.random.default_rng(seed)
    (folder / "photo_12mp.jpg").write_bytes(phone_jpeg(digit, rng))
    sketch = render(digit, "sketch", rng)
    files = {}
    for key, array in (("background", sketch["background"]), ("layer0", sketch["layers"][0]),
                       ("composite", sketch["composite"])):
        files[key] = folder / f"sketch_{key}.png"
        Image.fromarray(array).resize((560, 560)).save(files[key])
    return {"photo": str(folder / "photo_12mp.jpg"), "sketch": {k: str(v) for k, v in files.items()}}


def sketch_arg(files: dict[str, str]):
    from gradio_client import handle_file
    return {"background": handle_file(files["background"]), "layers": [handle_file(files["layer0"])],
            "composite": handle_file(files["composite"])}


def sketch_value(files: dict[str, str]) -> dict:
    """The value the app's function receives for those files (type="numpy", RGBA)."""
    load = lambda p: np.asarray(Image.open(p).convert("RGBA"))
    return {"background": load(files["background"]), "layers": [load(files["layer0"])],
            "composite": load(files["composite"])}


def serve_bare(port: int, inputs_json: str) -> None:
    """The bare app: the same input components and outputs as the app's API, returning canned outputs."""
    import gradio as gr

    import app

    inputs = json.loads(inputs_json)
    app.load_models()
    canned = {"upload": app.predict_upload(inputs["photo"], BACKEND, MODEL),
              "sketch": app.predict_sketch(sketch_value(inputs["sketch"]), BACKEND, MODEL)}

    def component(value):
        if isinstance(value, dict):
            return gr.Label(num_top_classes=3)
        if isinstance(value, np.ndarray):
            return gr.Image(type="numpy", format="png")
        if isinstance(value, (list, tuple)):
            return gr.Gallery(format="png")
        return gr.Textbox()

    with gr.Blocks() as demo:
        sketch = gr.Sketchpad(type="numpy", image_mode="RGBA")
        upload = gr.Image(type="filepath")
        backend = gr.Dropdown([BACKEND], value=BACKEND)
        model = gr.Dropdown([MODEL], value=MODEL)
        button = gr.Button()
        for name, source in (("sketch", sketch), ("upload", upload)):
            outputs = [component(v) for v in canned[name]]
            button.click(lambda image, b, m, name=name: canned[name], [source, backend, model], outputs,
                         api_name=f"predict_{name}")
    demo.queue().launch(server_port=port, prevent_thread_lock=False, quiet=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import urllib.request
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=40, help="timed calls per endpoint and input (default: 40)")
    p.add_argument("--json", type=Path, help="also write the figures here (default: none)")
    p.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    p.add_argument("--inputs", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_bare:
        return serve_bare(args.serve_bare, args.inputs)

    from gradio_client import Client, handle_file

    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    with tempfile.TemporaryDirectory(prefix="roundtrip_") as tmp:
        inputs = make_inputs(Path(tmp))
        ports = {"app": free_port(), "bare": free_port()}
        procs = {"app": subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(ports["app"])],
                                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                 "bare": subprocess.Popen([sys.executable, __file__, "--serve-bare", str(ports["bare"]),
                                           "--inputs", json.dumps(inputs)], cwd=ROOT, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)}
        try:
            clients = {}
            for name, port in ports.items():
                wait_for(f"http://127.0.0.1:{port}/", procs[name])
                clients[name] = Client(f"http://127.0.0.1:{port}/", verbose=False)
            calls = {"upload": lambda c: c.predict(handle_file(inputs["photo"]), BACKEND, MODEL,
                                                   api_name="/predict_upload"),
                     "sketch": lambda c: c.predict(sketch_arg(inputs["sketch"]), BACKEND, MODEL,
                                                   api_name="/predict_sketch")}
            times = {(s, i): [] for s in clients for i in calls}
            for name, call in calls.items():
                for server, client in clients.items():
                    for _ in range(3):  # warm-up: sessions, caches, first uploads
                        call(client)
                for _ in range(args.n):
                    for server, client in clients.items():
                        t0 = time.perf_counter()
                        call(client)
                        times[server, name].append(time.perf_counter() - t0)
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(timeout=30)
    rows = []
    for name in calls:
        p50 = {s: float(np.percentile(times[s, name], 50)) * 1e3 for s in clients}
        p90 = {s: float(np.percentile(times[s, name], 90)) * 1e3 for s in clients}
        rows.append({"input": name, "n": args.n, "app_p50_ms": round(p50["app"], 1), "app_p90_ms": round(p90["app"], 1),
                     "bare_p50_ms": round(p50["bare"], 1), "bare_p90_ms": round(p90["bare"], 1),
                     "app_minus_bare_p50_ms": round(p50["app"] - p50["bare"], 1)})
        print(f"{name:7s} app p50 {p50['app']:7.1f} ms p90 {p90['app']:7.1f}   bare p50 {p50['bare']:7.1f} ms "
              f"p90 {p90['bare']:7.1f}   app - bare (p50) {p50['app'] - p50['bare']:+6.1f} ms")
    from export.benchmark import machine_info

    result = {"cpu": machine_info()["cpu"], "load_average": os.getloadavg(), "backend": BACKEND, "model": MODEL, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
