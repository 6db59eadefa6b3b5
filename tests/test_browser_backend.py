"""The in-browser backend in a real browser (headless Chromium, Playwright): the JavaScript port of the sketch
preprocessing against the live Python engine.preprocess, and drawing with the mouse on the page.

Parity: drawings re-rendered from real MNIST test digits (engine.render's sketchpad kinds: 300 "sketch", and
50 of each other kind that makes a sketchpad value, e.g. stray taps beside the digit) go through the server's
preprocess + ONNX Runtime in this process and through static/preprocess.mjs + ONNX Runtime Web in the page,
loaded from the running app. Nothing is stored: a change to either side shows up here.
"""
from __future__ import annotations

import base64
import io
import json
import zlib
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from tests.test_browser import (CHECKPOINTS, CHROMIUM, FOUR, SEVEN, TIMEOUT_MS, draw, label_text, predicted,
                                wait_for_empty_hint)

BROWSER_BACKEND = "ONNX Runtime Web (in your browser)"
N_PARITY = {"sketch": 300}  # drawings per engine.render kind; other sketchpad kinds: 50
SKETCH_KINDS = ("sketch", "strays", "fat")  # the kinds whose value is a sketchpad's (the in-browser backend's input)
PAD = "#web_pad canvas"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary: apt-get install -y chromium")


class Requests:
    """Every request the page makes: its URLs, and the prediction requests (queue joins, uploads)."""

    def __init__(self, page):
        self.urls: list[str] = []
        self.sent: list[tuple[str, int | None]] = []  # (url, id of the component whose event sent it)
        page.on("request", self._seen)

    def _seen(self, request) -> None:
        self.urls.append(request.url)
        if "/queue/join" in request.url or "/upload" in request.url:
            body = json.loads(request.post_data or "{}") if "/queue/join" in request.url else {}
            self.sent.append((request.url, body.get("trigger_id")))

    def not_from(self, page, *elem_ids: str) -> list[tuple[str, int | None]]:
        """Prediction requests sent by anything but the components with these elem_ids (e.g. the dropdowns,
        whose server listeners may leave a busy browser a moment after the choice)."""
        ids = page.evaluate("ids => window.gradio_config.components.filter(c => ids.includes(c.props?.elem_id))"
                            ".map(c => c.id)", list(elem_ids))
        return [(u, t) for u, t in self.sent if t not in ids]


def open_page(chromium, url, init_script: str | None = None, **context_args):
    """A new context with the app's page open and its pad mounted; `init_script` runs before any of the
    page's own scripts."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, **context_args)
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    requests = Requests(page)
    page.goto(url)
    page.wait_for_selector("#sketch canvas")
    page.wait_for_function("() => document.querySelector('#web_pad .web-pad')")  # the pad's module is mounted
    return context, page, requests


def choose_backend(page, name: str, wait: bool = True) -> None:
    page.locator("#backend input").click()
    page.get_by_role("option", name=name, exact=True).click()
    if wait:
        page.wait_for_function(f"() => document.querySelector('#backend input').value === {name!r}")


def pad_alpha(page) -> np.ndarray:
    """The pad's drawing as an RGBA array, read from its canvas."""
    b64 = page.evaluate("""sel => {
        const c = document.querySelector(sel), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = ''; for (let i = 0; i < d.length; i += 8192) s += String.fromCharCode(...d.subarray(i, i + 8192));
        return [btoa(s), c.width, c.height];
    }""", PAD)
    data, w, h = b64
    return np.frombuffer(base64.b64decode(data), np.uint8).reshape(h, w, 4)


def shown_preview(page) -> np.ndarray:
    """The 28x28 the page shows (its 224x224 preview, one pixel per 8x8 block)."""
    src = page.locator("#preview img").get_attribute("src")
    assert src.startswith("data:image/png;base64,"), src[:80]
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("L"))
    return img[::8, ::8]


def test_draw_digits_in_the_browser(browser):
    """Mouse strokes on the pad are read in the page while the pen moves; no prediction request reaches the
    server, nothing comes from another host, and the page's 28x28 equals the server's for the same canvas."""
    from engine.preprocess import preprocess
    from engine.models import InputSpec

    chromium, url = browser
    context, page, requests = open_page(chromium, url)
    try:
        choose_backend(page, BROWSER_BACKEND)
        page.wait_for_selector(PAD, state="visible")
        assert not page.locator("#sketch").is_visible()  # the pad takes the sketchpad's place
        page.wait_for_function("() => document.querySelector('#web_pad .web-status').textContent.includes('ready')")
        wait_for_empty_hint(page)
        before = len(requests.not_from(page, "backend", "model"))
        # a 7 in one stroke, the pen still down: the answer is there before it lifts
        at = on_pad(page)
        page.mouse.move(*at(*SEVEN[0][0]))
        page.mouse.down()
        for x, y in SEVEN[0][1:]:
            page.mouse.move(*at(x, y), steps=6)
        assert predicted(page, "7") == "7"
        page.mouse.up()
        # the pen up, the page settles on the complete drawing's reading (Top 3 and preview), and keeps it once
        # Gradio has caught up with the answers the pad wrote in place while the pen moved
        final = server_top3(pad_alpha(page))
        page.wait_for_function(SHOWS_TOP3_JS, arg=final)
        page.wait_for_timeout(500)
        assert page.evaluate(SHOWS_TOP3_JS, final), (final, page.locator("#label").inner_text())
        timing = page.locator("#timing textarea").input_value()
        assert timing.startswith(BROWSER_BACKEND + ": ") and "ms in this page" in timing
        server_view = preprocess({"layers": [pad_alpha(page)]}, InputSpec())[1]
        assert np.abs(shown_preview(page).astype(int) - server_view).max() <= 1
        page.locator("#web_pad .web-clear").click()
        wait_for_empty_hint(page)
        assert label_text(page) == ""
        draw(page, FOUR, on_pad(page))
        assert predicted(page, "4") == "4"
        assert requests.not_from(page, "backend", "model")[before:] == []  # the strokes never reached the server
        hosts = {urlparse(u).netloc for u in requests.urls if urlparse(u).scheme in ("http", "https", "ws", "wss")}
        assert hosts == {urlparse(url).netloc}, hosts
    finally:
        context.close()


# the page's Top 3 is these classes, in this order, with these percentages (give or take one: the browser's
# float arithmetic may round the other way)
SHOWS_TOP3_JS = """(want) => {
  const sets = [...document.querySelectorAll('#label .confidence-set')];
  const top = document.querySelector('#label [data-testid="label-output-value"]')?.textContent;
  return top === want[0][0] && sets.length === want.length && sets.every((b, i) =>
    b.querySelector('dt').textContent === want[i][0]
    && Math.abs(parseInt(b.querySelector('dd').textContent) - want[i][1]) <= 1);
}"""


def server_top3(rgba: np.ndarray) -> list[list]:
    """[[class, percent], ...] the server's preprocessing and ONNX Runtime give for this drawing."""
    from engine.models import InputSpec
    from engine.preprocess import preprocess
    from export.runtime import load_runtime

    runtime = load_runtime(CHECKPOINTS / "mnist_cnn.pt", "ONNX Runtime")
    p = runtime.predict_proba(preprocess({"layers": [rgba]}, InputSpec())[0])[0]
    names = runtime.spec.class_names
    return [[names[i], round(float(p[i]) * 100)] for i in np.argsort(-p)[:3]]


def on_pad(page):
    box = page.locator(PAD).bounding_box()
    return lambda x, y: (box["x"] + x * box["width"], box["y"] + y * box["height"])


def test_without_webassembly_the_page_says_so_and_reads_on_the_server(browser):
    chromium, url = browser
    context, page, requests = open_page(chromium, url, init_script="delete window.WebAssembly")
    try:
        choose_backend(page, BROWSER_BACKEND, wait=False)  # it does not stay chosen
        page.wait_for_function("() => document.querySelector('#timing textarea').value.includes('not available')")
        assert "WebAssembly" in page.locator("#timing textarea").input_value()
        page.wait_for_function("() => document.querySelector('#backend input').value === 'ONNX Runtime'")
        page.wait_for_selector("#sketch canvas", state="visible")
        page.wait_for_function("() => document.querySelector('#sketch button[aria-label=\"Brush\"]')"
                               "?.classList.contains('highlight')")
        draw(page, SEVEN)  # the server's sketchpad, read on the server
        assert predicted(page, "7") == "7"
        assert page.locator("#timing textarea").input_value().startswith("ONNX Runtime: ")
    finally:
        context.close()


# ----------------------------------------------------------------------------------------------------
# Parity of the JavaScript preprocessing with the live Python one

PARITY_JS = """
async ([moduleUrl, ortUrl, wasmUrl, modelUrl, spec, drawings]) => {
  const { preprocess } = await import(new URL(moduleUrl, document.baseURI).href);
  const ort = await import(new URL(ortUrl, document.baseURI).href);
  ort.env.wasm.wasmPaths = { wasm: new URL(wasmUrl, document.baseURI).href };
  ort.env.wasm.numThreads = 1;
  const sessions = (window.paritySessions ??= {});  // one per model for the page, as the app's pad keeps one
  const session = await (sessions[modelUrl] ??= ort.InferenceSession.create(new URL(modelUrl, document.baseURI).href));
  const out = [];
  for (const [b64, w, h] of drawings) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const raw = new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate')));
    const alpha = new Uint8Array(await raw.arrayBuffer());
    const { x, preview } = preprocess(alpha, w, h, spec);
    const r = await session.run({ image: new ort.Tensor('float32', x, [1, 1, spec.height, spec.width]) });
    const logits = Array.from(r.logits.data);
    out.push([btoa(String.fromCharCode(...preview)), logits.indexOf(Math.max(...logits))]);
  }
  return out;
}
"""


def _kinds() -> list[str]:
    from engine.render import KINDS
    return [k for k in SKETCH_KINDS if k in KINDS]


@pytest.fixture(scope="module")
def parity_page(browser):
    """A page at the app's root for the parity runs: they load the modules and the model from the app
    themselves (the app's own page, with the pad mounted, is the tests above's)."""
    chromium, url = browser
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url + "config")  # a small answer from the app, so the page's URLs are the app's
    yield page
    context.close()


def read_in_page(page, runtime, ckpt, alphas: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    """Drawings' alpha channels (uint8 HxW) -> the page's 28x28 and top-1 class for each (static/preprocess.mjs
    and ONNX Runtime Web, loaded from the running app), a few MB per call."""
    from browser_backend import STATIC, _file_url, onnx_path

    spec = runtime.spec
    js_spec = {"height": spec.height, "width": spec.width, "mean": spec.mean, "std": spec.std, "layout": spec.layout}
    drawings = [[base64.b64encode(zlib.compress(a.tobytes(), 1)).decode(), a.shape[1], a.shape[0]] for a in alphas]
    got = []
    for i in range(0, len(drawings), 50):
        got += page.evaluate(PARITY_JS, [_file_url(STATIC / "preprocess.mjs"),
                                         _file_url(STATIC / "ort" / "ort.wasm.bundle.min.mjs"),
                                         _file_url(STATIC / "ort" / "ort-wasm-simd-threaded.wasm"),
                                         _file_url(onnx_path(ckpt)), js_spec, drawings[i:i + 50]])
    return [np.frombuffer(base64.b64decode(p), np.uint8).reshape(28, 28) for p, _ in got], [t for _, t in got]


def read_on_server(runtime, value) -> tuple[np.ndarray, int]:
    """A sketchpad value -> the server's 28x28 (engine.preprocess) and top-1 class (ONNX Runtime)."""
    from engine.preprocess import preprocess

    x, seen = preprocess(value, runtime.spec)
    return seen, int(runtime.predict_proba(x)[0].argmax())


@pytest.mark.parametrize("model,kind", [("mnist", k) for k in _kinds()] + [("fashion", "sketch")])
def test_browser_preprocessing_matches_the_server(parity_page, mnist_test, model, kind):
    """>= 99.5 % identical top-1 and previews within 1/255 (the fashion model frames drawings its own way:
    30 of them)."""
    from engine.render import render
    from export.runtime import load_runtime

    ckpt = CHECKPOINTS / f"{model}_cnn.pt"
    runtime = load_runtime(ckpt, "ONNX Runtime")
    n = N_PARITY.get(kind, 50) if model == "mnist" else 30
    rng = np.random.default_rng(14)
    alphas, server = [], []
    for digit in mnist_test.images[:n, 0].numpy():
        value = render(digit, kind, rng)
        server.append(read_on_server(runtime, value))
        alphas.append(np.asarray(value["layers"][0])[..., 3])
    server_previews, server_top1 = zip(*server)
    previews, top1 = read_in_page(parity_page, runtime, ckpt, alphas)
    diffs = [int(np.abs(p.astype(int) - s).max()) for p, s in zip(previews, server_previews)]
    same_top1 = sum(t == s for t, s in zip(top1, server_top1))
    close = sum(d <= 1 for d in diffs)
    print(f"{model}, {kind}: {n} drawings, identical previews {sum(d == 0 for d in diffs)}, within 1/255 {close}, "
          f"identical top-1 {same_top1}, largest difference {max(diffs)}/255")
    assert same_top1 >= 0.995 * n, f"top-1 differs on {n - same_top1} of {n} drawings"
    assert close >= 0.995 * n, f"previews differ by more than 1/255 on {n - close} of {n}: {sorted(diffs)[-5:]}"


def test_the_page_joins_a_fives_lifted_bar_as_the_server_does(parity_page):
    """The stray-mark clean-up's longer reach for a 5's bar drawn well apart from its body, in both languages:
    the page's 28x28 is the server's with the bar in it, and without the tap drawn as far off instead."""
    import cv2

    from export.runtime import load_runtime
    from tests.test_preprocess_real import BAR_LIFTS, _stroke, five_body

    ckpt = CHECKPOINTS / "mnist_cnn.pt"
    runtime = load_runtime(ckpt, "ONNX Runtime")
    inks = []
    for lift in BAR_LIFTS:
        five, y = five_body(lift)
        inks += [_stroke(five.copy(), (150, y), (250, y), 16), cv2.circle(five, (240, y), 10, 1.0, -1)]
    alphas = [(ink * 255).astype(np.uint8) for ink in inks]
    layers = [np.dstack([np.zeros((*a.shape, 3), np.uint8), a]) for a in alphas]  # RGBA, the ink in alpha
    server_previews, server_top1 = zip(*(read_on_server(runtime, {"layers": [rgba]}) for rgba in layers))
    previews, top1 = read_in_page(parity_page, runtime, ckpt, alphas)
    for seen, t, p, page_t in zip(server_previews, server_top1, previews, top1):
        assert np.abs(p.astype(int) - seen).max() <= 1 and page_t == t
    for bar, tap in zip(server_previews[::2], server_previews[1::2]):
        assert np.abs(bar.astype(int) - tap).max() > 100  # the bar is in the frame, the tap is not
