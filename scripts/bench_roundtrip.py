"""Time the app's round trip against a bare Gradio endpoint with the same inputs and outputs, in one run.

    python scripts/bench_roundtrip.py                  # starts the three servers itself; 40 calls per server and input
    python scripts/bench_roundtrip.py --n 100 --json roundtrip.json

What it measures: a whole call through Gradio's HTTP API, as `curl` or the page makes it (the input files
uploaded, `POST /gradio_api/call/<endpoint>`, its event stream read until `complete`, every output file
downloaded), on `/predict_upload` with a 12-megapixel phone JPEG and on `/predict_sketch` with a 560x560
drawing, against three servers:

- app: `app.py` (ONNX Runtime backend, the mnist model);
- bare: a bare Gradio app whose endpoints take the same input components and return the same outputs
  without any work: the outputs the app gave for the same inputs, computed once when it starts;
- reading: the same plain components as bare, whose function does the app's reading (`app._predict`:
  decoding, preprocessing, the model, the thumbnail with its boxes, the digit-by-digit crops).

app - bare is everything the app adds to a request, its reading included (whose own targets are in
scripts/bench_preprocess.py); app - reading is what the app's serving adds around the reading: its input
components that refuse bad files with a message, the queue that refuses when full, the outputs written
atomically. Calls alternate app, bare, reading, app..., so background load hits all alike. The servers run
in their own processes; this one is the client.

Not `gradio_client`: it looks for a job's messages every 50 ms (`time.sleep(0.05)` in
`gradio_client.utils.stream_sse_v1plus`), so its round trips come in 50 ms steps and a server 20 ms slower
often measures 50 ms slower. The event stream read here is handled as it arrives, as in the browser.
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


def sketch_value(files: dict[str, str]) -> dict:
    """The value the app's function receives for those files (type="numpy", RGBA)."""
    load = lambda p: np.asarray(Image.open(p).convert("RGBA"))
    return {"background": load(files["background"]), "layers": [load(files["layer0"])],
            "composite": load(files["composite"])}


def serve_bare(port: int, inputs_json: str, work: str) -> None:
    """A bare app: the same input components and outputs as the app's API, with plain Gradio components.
    work "canned": it returns the outputs the app gave for the same inputs; "reading": it reads them as
    the app does (app._predict)."""
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
            fn = app._predict if work == "reading" else lambda image, b, m, name=name: canned[name]
            button.click(fn, [source, backend, model], outputs, api_name=f"predict_{name}")
    demo.queue().launch(server_port=port, prevent_thread_lock=False, quiet=True)


def file_data(http, base: str, path: str) -> dict:
    """Upload one file as the page does; its reference for the API."""
    with open(path, "rb") as f:
        r = http.post(f"{base}gradio_api/upload", files=[("files", (Path(path).name, f))])
    r.raise_for_status()
    return {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}}


def output_urls(value) -> list[str]:
    """Every output file's URL inside an API answer (images, the gallery's items)."""
    if isinstance(value, dict):
        if value.get("url") and (value.get("meta") or {}).get("_type") == "gradio.FileData":
            return [value["url"]]
        return [u for v in value.values() for u in output_urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in output_urls(v)]
    return []


def call(http, base: str, endpoint: str, data: list) -> list:
    """One API call: POST, its event stream read until the answer, the output files downloaded."""
    r = http.post(f"{base}gradio_api/call/{endpoint}", json={"data": data})
    r.raise_for_status()
    event, answer = None, None
    with http.stream("GET", f"{base}gradio_api/call/{endpoint}/{r.json()['event_id']}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                answer = json.loads(line[5:])
                break
    if event != "complete":
        raise RuntimeError(f"/{endpoint} answered {event}: {answer}")
    for url in output_urls(answer):
        http.get(url).raise_for_status()
    return answer


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
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--inputs", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_bare:
        return serve_bare(args.serve_bare, args.inputs, args.work)

    import httpx

    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    work = {"bare": "canned", "reading": "reading"}  # the two bare servers, and what their function does
    servers = ("app", *work)
    with tempfile.TemporaryDirectory(prefix="roundtrip_") as tmp:
        inputs = make_inputs(Path(tmp))
        ports = {name: free_port() for name in servers}
        commands = {"app": [sys.executable, str(ROOT / "app.py"), "--port", str(ports["app"])],
                    **{name: [sys.executable, __file__, "--serve-bare", str(ports[name]), "--work", w,
                              "--inputs", json.dumps(inputs)] for name, w in work.items()}}
        procs = {name: subprocess.Popen(commands[name], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL) for name in servers}
        try:
            bases = {name: f"http://127.0.0.1:{port}/" for name, port in ports.items()}
            for name, base in bases.items():
                wait_for(base, procs[name])

            def upload(http, base):
                return [file_data(http, base, inputs["photo"]), BACKEND, MODEL]

            def sketch(http, base):
                files = {k: file_data(http, base, v) for k, v in inputs["sketch"].items()}
                return [{"background": files["background"], "layers": [files["layer0"]],
                         "composite": files["composite"]}, BACKEND, MODEL]

            calls = {"upload": upload, "sketch": sketch}
            times = {(s, i): [] for s in servers for i in calls}
            with httpx.Client(timeout=60) as http:
                for name, data in calls.items():
                    for server in servers:
                        for _ in range(3):  # warm-up: connections, caches, first uploads
                            call(http, bases[server], f"predict_{name}", data(http, bases[server]))
                    for _ in range(args.n):
                        for server in servers:
                            t0 = time.perf_counter()
                            call(http, bases[server], f"predict_{name}", data(http, bases[server]))
                            times[server, name].append(time.perf_counter() - t0)
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(timeout=30)
    rows = []
    for name in calls:
        p50 = {s: float(np.percentile(times[s, name], 50)) * 1e3 for s in servers}
        p90 = {s: float(np.percentile(times[s, name], 90)) * 1e3 for s in servers}
        rows.append({"input": name, "n": args.n, **{f"{s}_p50_ms": round(p50[s], 1) for s in servers},
                     **{f"{s}_p90_ms": round(p90[s], 1) for s in servers},
                     "app_minus_bare_p50_ms": round(p50["app"] - p50["bare"], 1),
                     "app_minus_reading_p50_ms": round(p50["app"] - p50["reading"], 1)})
        print(f"{name:7s} p50 (p90), ms: app {p50['app']:6.1f} ({p90['app']:6.1f})  bare {p50['bare']:6.1f} "
              f"({p90['bare']:6.1f})  reading {p50['reading']:6.1f} ({p90['reading']:6.1f})   app - bare "
              f"{p50['app'] - p50['bare']:+6.1f}  app - reading {p50['app'] - p50['reading']:+6.1f}")
    from export.benchmark import machine_info

    result = {"cpu": machine_info()["cpu"], "load_average": os.getloadavg(), "backend": BACKEND, "model": MODEL, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
