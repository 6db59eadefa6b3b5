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

from tests._server import AppServer

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = Path(os.environ.get("APP_TEST_CHECKPOINTS_DIR", ROOT / "checkpoints"))
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 30_000

# strokes as fractions of the canvas (x, y), like a person drawing with a mouse
SEVEN = [[(0.30, 0.22), (0.70, 0.22), (0.45, 0.80)]]
FOUR = [[(0.40, 0.20), (0.30, 0.55), (0.70, 0.55)], [(0.60, 0.35), (0.60, 0.85)]]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary: apt-get install -y chromium")


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    if not (CHECKPOINTS / "mnist_cnn.pt").is_file():
        pytest.fail(f"{CHECKPOINTS / 'mnist_cnn.pt'} is missing: the app serves the shipped checkpoints")
    with AppServer(["--checkpoints-dir", str(CHECKPOINTS)]) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server.url)
            page.wait_for_selector("#sketch canvas")
            yield page
        finally:
            browser.close()


def draw(page, strokes) -> None:
    box = page.locator("#sketch canvas").first.bounding_box()
    size = min(box["width"], box["height"]) * 0.8  # a square drawing area in the middle of the canvas
    x0, y0 = box["x"] + (box["width"] - size) / 2, box["y"] + (box["height"] - size) / 2
    for stroke in strokes:
        page.mouse.move(x0 + stroke[0][0] * size, y0 + stroke[0][1] * size)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(x0 + x * size, y0 + y * size, steps=3)
        page.mouse.up()


def predicted(page, expected: str) -> str:
    """The label once it shows `expected` (or whatever it shows when the wait runs out)."""
    selector = '#label [data-testid="label-output-value"]'
    label = page.locator(selector)
    try:
        page.wait_for_function("([sel, want]) => document.querySelector(sel)?.textContent.trim() === want",
                               arg=[selector, expected], timeout=TIMEOUT_MS)
    except Exception:
        pass
    return label.text_content().strip() if label.count() else ""


def test_draw_a_digit_and_read_the_prediction(page):
    brush = page.locator('#sketch button[aria-label="Brush"]')
    page.wait_for_function("() => document.querySelector('#sketch button[aria-label=\"Brush\"]')"
                           "?.classList.contains('highlight')")  # drawable at once, no tool to pick first
    draw(page, SEVEN)
    assert predicted(page, "7") == "7"
    assert page.locator("#timing textarea").input_value().startswith("ONNX Runtime: ")
    page.locator('#sketch button[aria-label="Clear canvas"]').click()
    page.wait_for_function("() => document.querySelector('#timing textarea').value.startsWith('draw a digit')")
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
        """(upload file name, model) of each request that carried an uploaded image."""
        return [(Path(d[2]["path"]).name, d[-1]) for d in self.sent if isinstance(d[2], dict) and d[2].get("path")]


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


def test_upload_a_file_then_switch_the_model(page):
    page.get_by_role("tab", name="Upload").click()
    choose_model(page, "mnist")
    page.locator("#upload input[type=file]").set_input_files(str(ROOT / "examples" / "fashion_sneaker.png"))
    # the digit model can only answer with a digit
    page.wait_for_function("() => /^[0-9]$/.test(document.querySelector("
                           "'#label [data-testid=\"label-output-value\"]')?.textContent.trim())")
    choose_model(page, "fashion")  # the user's own choice re-reads the uploaded image
    assert predicted(page, "Sneaker") == "Sneaker"
    page.locator('#upload button[aria-label="Remove Image"]').click()
    page.wait_for_function("() => document.querySelector('#timing textarea').value.startsWith('draw a digit')")


def choose_model(page, name: str) -> None:
    page.locator("#model input").click()
    page.get_by_role("option", name=name, exact=True).click()
    page.wait_for_function(f"() => document.querySelector('#model input').value === {name!r}")
