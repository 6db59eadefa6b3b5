"""Time the in-browser backend in a real browser (headless Chromium driven by Playwright) beside the server
round trip, in one run: ONNX Runtime Web batch-1 model calls, the time to load the page's model, and pen
movement to updated label while drawing with the mouse; then gradio_client's predict on the same drawing.

    python app.py &                                    # the app under test
    python scripts/bench_browser.py                    # http://127.0.0.1:7860/, /usr/bin/chromium
    python scripts/bench_browser.py --url http://127.0.0.1:7860/ --calls 300 --json benchmarks/mnist_cnn_browser.json

Pen-to-label latency: for every pointer move, from the move's event time to the first moment the page's Top 3
(label, classes, percentages) and preview all show a reading that includes that move, as read back from the
page when they change (moves made while a reading runs are folded into the next one, and their wait counts; a
half-updated page counts for nothing). Also reported: to the animation frame after that change, which paints
it. Server round trip: gradio_client's /predict_sketch with "ONNX Runtime" on the drawing the browser made, one
call at a time.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

BROWSER_BACKEND = "ONNX Runtime Web (in your browser)"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# pen paths as fractions of the canvas: a 7, a 4 (two strokes), a 3, a 0
DIGITS = {"7": [[(0.30, 0.22), (0.70, 0.22), (0.45, 0.80)]],
          "4": [[(0.40, 0.20), (0.30, 0.55), (0.70, 0.55)], [(0.60, 0.35), (0.60, 0.85)]],
          "3": [[(0.32, 0.22), (0.62, 0.22), (0.48, 0.48), (0.66, 0.62), (0.55, 0.80), (0.32, 0.78)]],
          "0": [[(0.50, 0.18), (0.30, 0.35), (0.30, 0.65), (0.50, 0.82), (0.70, 0.65), (0.70, 0.35), (0.50, 0.18)]]}
MOVE_PX = 6         # pen travel per pointer move, in page pixels (a steady hand at a 60 Hz pointer rate)
MOVE_EVERY_MS = 16  # time between pointer moves

# in every page: the trace the pad fills (moves, readings) and the times the outputs change. A change counts
# as showing a reading only when the page's Top 3 (label, the three classes and their percentages) and preview
# are all that reading's, read back from the page; a half-updated or stale page matches no reading.
TRACE_JS = """
window.__digitsTrace = [];
window.__digitsPainted = [];
window.__digitsViewKey = (v) => v && [v.label, ...v.top.map(([name, pct]) => `${name}:${pct}%`), v.preview].join('|');
const shownKey = () => {
  const label = document.querySelector('#label [data-testid="label-output-value"]');
  const img = document.querySelector('#preview .image-frame img');
  if (!label || !img) return null;
  const top = [...document.querySelectorAll('#label .confidence-set')].map(
    (b) => `${b.querySelector('dt').textContent}:${b.querySelector('dd').textContent}`);
  return [label.textContent, ...top, img.getAttribute('src')].join('|');
};
const watch = () => {
  const targets = ['#label', '#preview'].map((s) => document.querySelector(s));
  if (targets.some((t) => !t)) return setTimeout(watch, 100);
  const seen = new MutationObserver(() => {
    const t = performance.now(), key = shownKey(), trace = window.__digitsTrace;
    let seq = null;  // the newest reading whose answer the page shows now
    for (let i = trace.length - 1; i >= 0 && key !== null; i--) {
      if (trace[i].shown !== undefined && window.__digitsViewKey(trace[i].view) === key) { seq = trace[i].shown; break; }
    }
    const entry = key === null ? { t, seq, blank: true } : { t, seq };  // blank: no Top 3 or no preview
    window.__digitsPainted.push(entry);
    requestAnimationFrame(() => { entry.frame = performance.now(); });  // the frame that paints it
  });
  targets.forEach((t) => seen.observe(t, { subtree: true, childList: true, characterData: true, attributes: true }));
};
document.addEventListener('DOMContentLoaded', watch);
"""

# A reading whose answer equals the one already on the page changes nothing there: it shows from the moment it
# is done. The trace's previews are dropped before it leaves the page.
COLLECT_JS = """() => {
  const trace = window.__digitsTrace, painted = window.__digitsPainted.slice(), key = window.__digitsViewKey;
  const bySeq = new Map(trace.filter((e) => e.shown !== undefined).map((e) => [e.shown, key(e.view)]));
  for (const r of trace.filter((e) => e.shown !== undefined)) {
    const before = painted.filter((p) => p.t <= r.t).pop();
    if (before && before.seq !== null && bySeq.get(before.seq) === key(r.view)) painted.push({ t: r.t, seq: r.shown, frame: r.t });
  }
  return [trace.map(({ view, ...e }) => e), painted];
}"""

# batch-1 model calls alone, in the page, on a real drawing's input; ONNX Runtime Web loaded as the pad does
MODEL_CALLS_JS = """
async ([ortUrl, wasmUrl, modelUrl, x, calls]) => {
  const ort = await import(new URL(ortUrl, document.baseURI).href);
  ort.env.wasm.wasmPaths = { wasm: new URL(wasmUrl, document.baseURI).href };
  ort.env.wasm.numThreads = 1;
  const session = await ort.InferenceSession.create(new URL(modelUrl, document.baseURI).href);
  const input = new ort.Tensor('float32', Float32Array.from(x), [1, 1, 28, 28]);
  for (let i = 0; i < 20; i++) await session.run({ image: input });  // warm-up
  const ms = [];
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    await session.run({ image: input });
    ms.push(performance.now() - t0);
  }
  return ms;
}
"""


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values, float), q)) if len(values) else float("nan")


def draw(page, strokes) -> None:
    box = page.locator("#web_pad canvas").bounding_box()
    at = lambda x, y: (box["x"] + x * box["width"], box["y"] + y * box["height"])  # noqa: E731
    for stroke in strokes:
        points = [at(*p) for p in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            steps = max(1, round(np.hypot(x1 - x0, y1 - y0) / MOVE_PX))
            for i in range(1, steps + 1):
                page.mouse.move(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps)
                page.wait_for_timeout(MOVE_EVERY_MS)
        page.mouse.up()


def pen_to_label(trace: list[dict], painted: list[dict], when: str = "t") -> list[float]:
    """For each pointer move: ms until the page showed a reading that includes it (when="t": the page's Top 3
    and preview changed to it; "frame": the next animation frame after that change, the one that paints it)."""
    out = []
    shown = [p for p in painted if p["seq"] is not None and when in p]
    for move in (e for e in trace if "move" in e):
        later = [p[when] for p in shown if p["seq"] >= move["move"] and p["t"] >= move["t"]]
        if later:
            out.append(min(later) - move["t"])
    return out


def canvas_rgba(page) -> np.ndarray:
    data, w, h = page.evaluate("""() => {
        const c = document.querySelector('#web_pad canvas'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = ''; for (let i = 0; i < d.length; i += 8192) s += String.fromCharCode(...d.subarray(i, i + 8192));
        return [btoa(s), c.width, c.height];
    }""")
    return np.frombuffer(base64.b64decode(data), np.uint8).reshape(h, w, 4)


def server_round_trips(url: str, rgba: np.ndarray, calls: int) -> list[float]:
    """gradio_client /predict_sketch with the server's ONNX Runtime on this drawing, one call at a time."""
    from gradio_client import Client, handle_file

    folder = Path(tempfile.mkdtemp(prefix="bench_browser_"))
    layer = folder / "layer.png"
    Image.fromarray(rgba).save(layer)
    client = Client(url, verbose=False)
    sketch = {"background": None, "layers": [handle_file(str(layer))], "composite": None}
    ms = []
    for i in range(calls + 3):
        t0 = time.perf_counter()
        client.predict(sketch, "ONNX Runtime", "mnist", api_name="/predict_sketch")
        if i >= 3:  # the first calls upload the file and warm up
            ms.append((time.perf_counter() - t0) * 1e3)
    shutil.rmtree(folder, ignore_errors=True)
    return ms


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:7860/", help="the running app (default: %(default)s)")
    p.add_argument("--chromium", default=os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium",
                   help="Chromium binary (default: $CHROMIUM_PATH or chromium on PATH)")
    p.add_argument("--calls", type=int, default=300, help="timed batch-1 model calls in the page (default: 300)")
    p.add_argument("--rounds", type=int, default=2, help="times each test digit is drawn (default: 2)")
    p.add_argument("--server-calls", type=int, default=50, help="timed gradio_client round trips (default: 50)")
    p.add_argument("--json", type=Path, help="write the rows here as JSON (default: print only)")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from browser_backend import STATIC, _file_url, onnx_path
    from engine.models import InputSpec
    from engine.preprocess import preprocess
    from export.benchmark import machine_info

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        page.add_init_script(TRACE_JS)
        joins = []  # prediction requests: (url, id of the component whose event sent it)
        page.on("request", lambda r: joins.append((r.url, json.loads(r.post_data or "{}").get("trigger_id")
                                                   if "/queue/join" in r.url else None))
                if "/queue/join" in r.url or "/upload" in r.url else None)
        t_open = time.perf_counter()
        page.goto(args.url)
        page.wait_for_function("() => document.querySelector('#web_pad .web-pad')")  # the pad is mounted
        page.locator("#backend input").click()
        t_choose = page.evaluate("performance.now()")
        page.get_by_role("option", name=BROWSER_BACKEND, exact=True).click()
        page.wait_for_function("() => document.querySelector('#web_pad .web-status').textContent.includes('ready')")
        page_ready_s = time.perf_counter() - t_open
        trace = page.evaluate("window.__digitsTrace")
        load = next(e for e in trace if "load" in e)
        before = len(joins)
        page.evaluate("window.__digitsTrace.length = 0; window.__digitsPainted.length = 0")
        answers = []
        for _ in range(args.rounds):
            for digit, strokes in DIGITS.items():
                draw(page, strokes)
                page.wait_for_timeout(300)
                answers.append((digit, page.locator('#label [data-testid="label-output-value"]').text_content().strip()))
                if (digit, _) != ("0", args.rounds - 1):
                    page.locator("#web_pad .web-clear").click()
                    page.wait_for_timeout(200)
        page.wait_for_timeout(100)  # the last changes' animation frames
        trace, painted = page.evaluate(COLLECT_JS)
        # the dropdowns' own server listeners may leave a busy browser late: they are not the strokes'
        dropdowns = page.evaluate("window.gradio_config.components.filter(c => ['backend', 'model']"
                                  ".includes(c.props?.elem_id)).map(c => c.id)")
        requests_while_drawing = sum(t not in dropdowns for _, t in joins[before:])
        latency = pen_to_label(trace, painted)
        to_frame = pen_to_label(trace, painted, "frame")
        readings = [e for e in trace if "shown" in e]
        rgba = canvas_rgba(page)
        x = preprocess({"layers": [rgba]}, InputSpec())[0]
        ckpt = Path(__file__).resolve().parents[1] / "checkpoints" / "mnist_cnn.pt"
        calls = page.evaluate(MODEL_CALLS_JS, [_file_url(STATIC / "ort" / "ort.wasm.bundle.min.mjs"),
                                               _file_url(STATIC / "ort" / "ort-wasm-simd-threaded.wasm"),
                                               _file_url(onnx_path(ckpt)), x.ravel().tolist(), args.calls])
        version = page.evaluate("navigator.userAgent")
        chromium.close()
    server = server_round_trips(args.url, rgba, args.server_calls)
    load1, load5 = os.getloadavg()[:2]
    result = {
        "machine": {"cpu": machine_info()["cpu"], "cores": os.cpu_count(), "load_average_1_5": [load1, load5],
                    "browser": version},
        "rows": [
            {"engine": "ONNX Runtime Web 1.30.0", "provider": "wasm (SIMD, 1 thread)", "where": "page", "batch": 1,
             "what": "model call", "n": len(calls), "p50_ms": pct(calls, 50), "p90_ms": pct(calls, 90),
             "p99_ms": pct(calls, 99)},
            {"engine": "ONNX Runtime Web 1.30.0", "provider": "wasm (SIMD, 1 thread)", "where": "page", "batch": 1,
             "what": "pen move -> label (preprocess + model + page update)", "n": len(latency),
             "p50_ms": pct(latency, 50), "p90_ms": pct(latency, 90), "p99_ms": pct(latency, 99)},
            {"engine": "ONNX Runtime 1.31 (server)", "provider": "CPU", "where": "gradio_client round trip",
             "batch": 1, "what": "/predict_sketch", "n": len(server), "p50_ms": pct(server, 50),
             "p90_ms": pct(server, 90), "p99_ms": pct(server, 99)},
        ],
        "model_load_ms": load["ms"], "model_load_from_choice_ms": load["ready"] - t_choose,
        "page_open_to_ready_s": page_ready_s,
        "while_drawing": {"pointer_moves": sum("move" in e for e in trace), "readings": len(readings),
                          "model_ms_p50": pct([e["model_ms"] for e in readings], 50),
                          "model_ms_p90": pct([e["model_ms"] for e in readings], 90),
                          "preprocess_ms_p50": pct([e["pre_ms"] for e in readings], 50),
                          "preprocess_ms_p90": pct([e["pre_ms"] for e in readings], 90),
                          "server_requests": requests_while_drawing,
                          "moves_answered": len(latency),
                          "move_event_to_handler_ms_p50": pct([e["handled"] - e["t"] for e in trace if "handled" in e], 50),
                          "reading_ms_p50": pct([e["t"] - e["start"] for e in readings if "start" in e], 50),
                          "answer_onto_page_ms_p50": pct([e["out_ms"] for e in readings if "out_ms" in e], 50),
                          "pen_to_painted_frame_ms_p50": pct(to_frame, 50),
                          "pen_to_painted_frame_ms_p90": pct(to_frame, 90),
                          "page_changes_matching_no_reading": sum(p["seq"] is None and "blank" not in p for p in painted)},
        "answers": answers,
    }
    for row in result["rows"]:
        print(f"{row['engine']:28} {row['what']:54} n={row['n']:4}  p50 {row['p50_ms']:7.2f} ms  "
              f"p90 {row['p90_ms']:7.2f} ms")
    print(f"model load in the page: {load['ms']:.0f} ms (wasm + .onnx fetched, session created); "
          f"page open to ready: {page_ready_s:.1f} s")
    w = result["while_drawing"]
    print(f"while drawing: {w['pointer_moves']} pointer moves, {w['readings']} readings, model {w['model_ms_p50']:.2f} ms "
          f"p50 ({w['model_ms_p90']:.2f} ms p90) and preprocessing {w['preprocess_ms_p50']:.2f} ms p50 "
          f"({w['preprocess_ms_p90']:.2f} ms p90), {w['server_requests']} server requests")
    print(f"a move's event -> its handler {w['move_event_to_handler_ms_p50']:.2f} ms, a reading (preprocessing, model, "
          f"answer onto the page) {w['reading_ms_p50']:.2f} ms, of which onto the page {w['answer_onto_page_ms_p50']:.2f} ms, p50")
    print(f"pen move -> the frame painting the label: p50 {w['pen_to_painted_frame_ms_p50']:.2f} ms, p90 "
          f"{w['pen_to_painted_frame_ms_p90']:.2f} ms; page changes showing no reading (half-updated, stale): "
          f"{w['page_changes_matching_no_reading']}")
    print(f"read: {answers}; machine: {result['machine']['cpu']}, load average {load1:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
