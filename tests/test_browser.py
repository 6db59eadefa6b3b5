"""A real browser on the real app: headless Chromium (Debian's, driven by Playwright) opens the page, draws
digits on the sketchpad with the mouse, and reads the predicted label; then picks an example image.

Needs a Chromium binary: /usr/bin/chromium (`apt-get install -y chromium`, as .ci/run does) or $CHROMIUM_PATH.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import APP_CHECKPOINTS

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = APP_CHECKPOINTS  # what the shared server (tests/conftest.py) serves
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 30_000
LABEL = '#label [data-testid="label-output-value"]'  # the top class's name in the "Top 3" output

# strokes as fractions of the canvas (x, y), like a person drawing with a mouse
SEVEN = [[(0.30, 0.22), (0.70, 0.22), (0.45, 0.80)]]
FOUR = [[(0.40, 0.20), (0.30, 0.55), (0.70, 0.55)], [(0.60, 0.35), (0.60, 0.85)]]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary: apt-get install -y chromium")


def open_page(context, url: str):
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#sketch canvas")
    return page


@pytest.fixture(scope="module")
def page(browser):
    chromium, url = browser
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    yield open_page(context, url)
    context.close()


def on_canvas(page):
    """Maps (x, y) fractions of a square drawing area in the middle of the canvas to page coordinates."""
    box = page.locator("#sketch canvas").first.bounding_box()
    size = min(box["width"], box["height"]) * 0.8
    x0, y0 = box["x"] + (box["width"] - size) / 2, box["y"] + (box["height"] - size) / 2
    return lambda x, y: (x0 + x * size, y0 + y * size)


def draw(page, strokes, at=None) -> None:
    """Mouse strokes; `at` maps (x, y) fractions to page coordinates (default: the sketchpad's, on_canvas)."""
    at = at or on_canvas(page)
    for stroke in strokes:
        page.mouse.move(*at(*stroke[0]))
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(*at(x, y), steps=3)
        page.mouse.up()


def wait_for_empty_hint(page) -> None:
    """The outputs blanked with the hint: nothing to read on the visible tab."""
    page.wait_for_function("() => document.querySelector('#timing textarea').value.startsWith('draw a digit')")


def label_text(page) -> str:
    label = page.locator(LABEL)
    return label.text_content().strip() if label.count() else ""


def predicted(page, expected: str) -> str:
    """The label once it shows `expected` (or whatever it shows when the wait runs out)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    try:
        page.wait_for_function("([sel, want]) => document.querySelector(sel)?.textContent.trim() === want",
                               arg=[LABEL, expected], timeout=TIMEOUT_MS)
    except PlaywrightTimeoutError:
        pass
    return label_text(page)


def test_draw_a_digit_and_read_the_prediction(page):
    brush = page.locator('#sketch button[aria-label="Brush"]')
    page.wait_for_function("() => document.querySelector('#sketch button[aria-label=\"Brush\"]')"
                           "?.classList.contains('highlight')")  # drawable at once, no tool to pick first
    draw(page, SEVEN)
    assert predicted(page, "7") == "7"
    assert page.locator("#timing textarea").input_value().startswith("ONNX Runtime: ")
    page.locator('#sketch button[aria-label="Clear canvas"]').click()
    wait_for_empty_hint(page)
    assert "highlight" in brush.get_attribute("class")  # still drawable after clearing
    draw(page, FOUR)
    assert predicted(page, "4") == "4"


class Predictions:
    """The prediction requests the page sends to the server (the queue's join calls), as (inputs, ...) lists."""

    def __init__(self, page):
        self.sent: list[list] = []
        page.on("request", self._seen)

    def _seen(self, request) -> None:
        if request.method == "POST" and "/queue/join" in request.url:
            self.sent.append(json.loads(request.post_data or "{}").get("data") or [])

    def images(self) -> list[tuple[str, str]]:
        """(file name, model) of each request that carried an uploaded image (a sketch has no "path")."""
        return [(Path(x["path"]).name, d[-1]) for d in self.sent for x in d if isinstance(x, dict) and x.get("path")]

    def counts(self) -> list:
        """The number each request carries: its place in the order the user acted (app.COUNT_JS)."""
        return [d[0] if d else None for d in self.sent]


def test_pick_an_example_image(page):
    requests = Predictions(page)
    page.get_by_role("tab", name="Upload").click()
    page.locator("img[src*='mnist_3.png']").first.click()  # a real MNIST test 3 from examples/
    assert predicted(page, "3") == "3"
    requests.sent.clear()
    page.locator("img[src*='fashion_sneaker.png']").first.click()  # switches the model to fashion too
    assert predicted(page, "Sneaker") == "Sneaker"
    assert page.locator("#model input").input_value() == "fashion"
    # One prediction, with the new image and the new model together: never the fashion model on the old 3
    # (it reads "Sandal"), which a model-change event used to send and which could land last.
    page.wait_for_timeout(1000)
    assert requests.images() == [("fashion_sneaker.png", "fashion")]
    assert requests.counts() and all(isinstance(n, (int, float)) and n > 0 for n in requests.counts())
    # and nothing came after it: the sketchpad fires "change" when its tab is hidden, and that request
    # (with the upload as it was before the click) once blanked the answer a moment after it appeared
    assert label_text(page) == "Sneaker"
    # each tab shows the answer for its own input: an empty canvas on Draw, the sneaker again on Upload. The
    # tab's own request carries the drawing as it was before "Clear"; on a busy machine the page took seconds
    # to send it, and its answer (the old drawing read) landed after the hint and stayed (app.LatestRequest)
    page.get_by_role("tab", name="Draw").click()
    page.locator('#sketch button[aria-label="Clear canvas"]').click()
    wait_for_empty_hint(page)
    page.get_by_role("tab", name="Upload").click()
    assert predicted(page, "Sneaker") == "Sneaker"


def test_upload_a_file_then_switch_the_model(page):
    page.get_by_role("tab", name="Upload").click()
    choose_model(page, "mnist")
    page.locator("#upload input[type=file]").set_input_files(str(ROOT / "examples" / "fashion_sneaker.png"))
    # the digit model can only answer with digits (a sneaker's parts may read as a number: issue 12)
    page.wait_for_function("sel => /^[0-9]+$/.test(document.querySelector(sel)?.textContent.trim())", arg=LABEL)
    choose_model(page, "fashion")  # the user's own choice re-reads the uploaded image
    assert predicted(page, "Sneaker") == "Sneaker"
    page.locator('#upload button[aria-label="Remove Image"]').click()
    wait_for_empty_hint(page)


def test_upload_an_iphone_photo(page, tmp_path):
    """An iPhone's photo (HEIC) is read, and the upload box shows it: no browser but Safari draws HEIC, so
    the box gets an upright JPEG copy, which a change of model then reads."""
    import importlib

    from PIL import Image, ImageOps

    importlib.import_module("engine.preprocess.decode")  # registers HEIC with PIL, which then writes it too
    photo = ImageOps.invert(Image.open(ROOT / "examples" / "mnist_4.png").convert("RGB")).resize((600, 800))
    photo.save(tmp_path / "IMG_0004.HEIC", quality=90)
    page.get_by_role("tab", name="Upload").click()
    choose_model(page, "mnist")
    # the type as the browser gives it on a Mac (Playwright's own guess from ".HEIC" is no image type)
    page.locator("#upload input[type=file]").set_input_files(
        {"name": "IMG_0004.HEIC", "mimeType": "image/heic", "buffer": (tmp_path / "IMG_0004.HEIC").read_bytes()})
    assert predicted(page, "4") == "4"
    page.wait_for_function("() => { const i = document.querySelector('#upload img');"
                           " return i && i.complete && i.naturalWidth === 600 && /IMG_0004[.]jpeg$/.test(i.src); }")
    choose_model(page, "fashion")  # re-reads what the box holds now: the JPEG copy
    page.wait_for_function("sel => !/^[0-9]+$/.test(document.querySelector(sel)?.textContent.trim() || '4')",
                           arg=LABEL)
    choose_model(page, "mnist")
    assert predicted(page, "4") == "4"
    page.locator('#upload button[aria-label="Remove Image"]').click()
    wait_for_empty_hint(page)


def choose_model(page, name: str) -> None:
    page.locator("#model input").click()
    page.get_by_role("option", name=name, exact=True).click()
    page.wait_for_function(f"() => document.querySelector('#model input').value === {name!r}")


def test_draw_with_a_finger_on_a_phone(browser):
    """A phone-sized touch screen: the canvas fits the width, and a finger (touch events, no mouse) draws."""
    chromium, url = browser
    context = chromium.new_context(viewport={"width": 412, "height": 915}, device_scale_factor=2.6,
                                   is_mobile=True, has_touch=True)
    try:
        page = open_page(context, url)
        assert page.evaluate("document.documentElement.scrollWidth") <= 412  # no sideways scrolling
        box = page.locator("#sketch canvas").first.bounding_box()
        assert box["width"] >= 300 and box["x"] >= 0 and box["x"] + box["width"] <= 412
        touch = context.new_cdp_session(page)
        at = on_canvas(page)
        # a sloppy 7: a tilted bar and a wobbly stem, one continuous stroke of finger moves
        path = [(0.25, 0.25), (0.50, 0.20), (0.72, 0.24), (0.60, 0.45), (0.55, 0.55), (0.47, 0.82)]
        points = [at(a + (c - a) * t / 4, b + (d - b) * t / 4) for (a, b), (c, d) in zip(path, path[1:])
                  for t in range(4)] + [at(*path[-1])]
        touch.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": points[0][0],
                                                                                         "y": points[0][1]}]})
        for x, y in points[1:]:
            touch.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        assert predicted(page, "7") == "7"
    finally:
        context.close()
