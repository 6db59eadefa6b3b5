"""Draw or upload a digit (or a piece of clothing) and read it with PyTorch, TorchScript or ONNX Runtime.

    python app.py                                   # http://127.0.0.1:7860, the shipped mnist and fashion models
    python app.py --host 0.0.0.0 --port 8080        # reachable from other machines
    python app.py --share                           # also a temporary public *.gradio.live link
    python app.py --share --share-server frp.example.org:7000   # public link through your own share server
    python app.py --auth alice:secret               # or DIGITS_APP_AUTH=alice:secret python app.py
    python app.py --checkpoint runs/shapes_cnn.pt   # also serve your own model (repeatable)
    python app.py --max-wait 3 --cache-minutes 60   # refuse what would wait over 3 s; keep files an hour

From Python, with the app running:

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    label, preview, timing, found, digits = client.predict(handle_file("examples/mnist_7.png"), "ONNX Runtime",
                                                           "mnist", api_name="/predict_upload")
    print(label["label"], timing)                   # the top class, and "ONNX Runtime: ... ms (preprocessing ... ms)"
    # preview: the 28x28 the model saw; found: the input's thumbnail with a box where the digit was found;
    # digits: [{"image": ..., "caption": "1: 7 (99.8%)"}], each digit's crop with its own reading.
    # Several digits in one image: label["label"] is the number ("2026"), its confidences the three likeliest
    # whole readings, preview the digits' 28x28s side by side, found a box per digit, digits one crop each;
    # the timing text starts with "Note: ..." where a limit was met (more than 12 digits, a blob not split)
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import io
import os
import platform
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
from PIL import Image, ImageDraw, ImageOps

from browser_backend import BROWSER_BACKEND, SERVER_FALLBACK, browser_pad, wire_browser_pad
from engine.checkpoint import CheckpointError
from engine.models import InputSpec
from engine.preprocess import EmptyInputError, PreprocessError, check_size, open_image
from engine.preprocess.ink import is_sketch
from engine.reading import Reading, read
from export.benchmark import format_table, plot_results, run_benchmark
from export.runtime import (MissingExportError, RefusedExportError, Runtime, StaleExportError,
                            available_backends, check_exports, load_runtime)

ROOT = Path(__file__).resolve().parent
SHIPPED = {"mnist": "mnist_cnn.pt", "fashion": "fashion_cnn.pt"}  # model name -> file in checkpoints/
DEFAULT_MODEL = "mnist"
DEFAULT_BACKEND = "ONNX Runtime"
AUTH_ENV = "DIGITS_APP_AUTH"
CANVAS = (560, 560)      # sketchpad pixels: room to draw on a laptop; the page scales it down on a phone
SKETCH_HEIGHT = "min(660px, 95vw)"  # the canvas at about full size on a laptop, no wasted space on a phone
BRUSH_RADIUS = 16        # px on that canvas, i.e. a stroke about 1/17 of the canvas, like MNIST's ink
PREVIEW_SCALE = 8        # the 28x28 model input is shown at 224x224, nearest-neighbour so pixels stay pixels
DIGIT_SCALE = 4          # each digit's 28x28 in the digit-by-digit gallery, at 112x112
THUMBNAIL = 280          # "where the digit was found": the input shown with its longest side at most this
                         # (shown 240 px high; the 560 px sketchpad halves exactly, 8x faster than to 320)
BOX_COLOUR = (255, 0, 0)  # ... with a box this colour drawn around the ink framed for the model (one per digit)
BOX_WIDTH = 3            # ... this many thumbnail pixels wide, just outside the ink
EXAMPLES_DIR = ROOT / "examples"
OUTPUTS = ("label", "preview", "timing", "found", "digits")  # what the page and both API endpoints return
EMPTY_HINT = "draw a digit (or upload an image) to see the prediction"


def _save_pil_to_cache_atomically(img, cache_dir: str, name: str = "image", format: str = "webp", **params) -> str:
    """gradio.processing_utils.save_pil_to_cache, but never a half-written file (params: PIL's, e.g. quality).

    Gradio 6 stores each output image at a path named by its content hash with write_bytes (truncate,
    then write). Two requests with the same preview (the same digit, an example clicked twice) then race:
    one truncates the file while it is being served to the other, whose response breaks off mid-body
    (seen as RemoteProtocolError in tests/test_hardening.py's load test). Same bytes, renamed into place.
    """
    from gradio import processing_utils

    if params:
        with io.BytesIO() as buf:
            img.save(buf, format, **params)
            data = buf.getvalue()
    else:
        data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    path = (folder / f"{name}.{format}").resolve()
    for attempt in range(2):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
            break
        except FileNotFoundError:  # an old empty folder swept away just now (sweep_empty_folders)
            if attempt:
                raise
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return str(path)


gr.processing_utils.save_pil_to_cache = _save_pil_to_cache_atomically


def _is_static_file(file_path, static_files: list[Path]) -> bool:
    """gradio.utils._is_static_file, resolving the file once instead of once per static path, and each static
    path once per process (they are this app's own files: static/ and the models' .onnx exports).

    Gradio asks this of every file in every request and answer (about 10 for a drawing), and resolved both
    paths for each of the 3 static paths: 0.2 ms a file, about 2 ms of each request."""
    if isinstance(file_path, gr.FileData):
        file_path = file_path.path
    if isinstance(file_path, str):
        file_path = Path(file_path)
        if not file_path.exists():
            return False
    if not isinstance(file_path, Path):
        return False
    resolved = Path(os.path.abspath(file_path)).resolve()
    return any(resolved == s or s in resolved.parents for s in _resolved_static(tuple(static_files)))


@functools.lru_cache(maxsize=8)
def _resolved_static(paths: tuple[Path, ...]) -> tuple[Path, ...]:
    return tuple(Path(os.path.abspath(p)).resolve() for p in paths)


gr.utils._is_static_file = _is_static_file


# ----------------------------------------------------------------------------------------------------
# Models: every checkpoint and its runtimes are loaded once at start-up and shared by all requests
# (the runtimes are thread-safe).


@dataclass
class ServedModel:
    name: str
    checkpoint: Path
    spec: InputSpec
    runtimes: dict[str, Runtime]                            # backend name -> loaded runtime
    problems: dict[str, str] = field(default_factory=dict)  # backend name -> why it cannot serve
    offered: list[str] = field(default_factory=list)        # backends listed in the UI for this model

    def runtime(self, backend: str) -> Runtime:
        if backend in self.runtimes:
            return self.runtimes[backend]
        if backend == BROWSER_BACKEND:
            raise gr.Error(f"{BROWSER_BACKEND} runs in the page, not on the server; from Python choose "
                           f"{SERVER_FALLBACK!r}, which runs the same .onnx file")
        if backend in self.problems:
            raise gr.Error(f"{backend} cannot serve the {self.name} model: {self.problems[backend]}")
        raise gr.Error(f"unknown backend {backend!r} for the {self.name} model; choose one of: "
                       f"{', '.join(self.runtimes)}")


MODELS: dict[str, ServedModel] = {}


def load_served_model(name: str, checkpoint: Path, only_fresh: bool) -> ServedModel:
    """Load every backend of one checkpoint; a missing or stale export is recorded, never served.

    only_fresh: list only the backends that loaded (user checkpoints); otherwise list them all, so that
    choosing a broken one says how to rebuild it.
    """
    for problem in check_exports(checkpoint):
        print(f"warning: {name}: {problem}", file=sys.stderr)
    runtimes, problems, refused = {}, {}, set()
    for backend in available_backends():
        try:
            # A request's model runs are a few among its preprocessing: ONNX Runtime's threads spinning
            # between runs would take the cores from it (see export.runtime.ort_session).
            runtimes[backend] = load_runtime(checkpoint, backend, spin=False)
        except RefusedExportError as e:  # failed its checks at export (int8 on this CPU, say): not offered
            print(f"note: {name}: {e}", file=sys.stderr)
            problems[backend] = str(e)
            refused.add(backend)
        except (MissingExportError, StaleExportError) as e:
            problems[backend] = str(e)
    if not runtimes:
        raise CheckpointError(f"no backend can serve {checkpoint}: " + "; ".join(problems.values()))
    spec = next(iter(runtimes.values())).spec
    offered = list(runtimes) if only_fresh else [b for b in available_backends() if b not in refused]
    if SERVER_FALLBACK in runtimes:  # a fresh .onnx export: the page can run it itself
        offered.append(BROWSER_BACKEND)
    return ServedModel(name, Path(checkpoint), spec, runtimes, problems, offered)


def load_models(shipped_dir: Path = ROOT / "checkpoints", extra: list[Path] = ()) -> dict[str, ServedModel]:
    """Fill MODELS with the shipped models found in shipped_dir and each extra checkpoint (named by stem)."""
    MODELS.clear()
    for name, filename in SHIPPED.items():
        path = Path(shipped_dir) / filename
        if path.is_file():
            MODELS[name] = load_served_model(name, path, only_fresh=False)
        else:
            print(f"warning: the shipped {name} model {path} is missing; train it with `python -m "
                  f"engine.train --dataset {name} --out {path}`, then `python -m export --checkpoint {path}`",
                  file=sys.stderr)
    for path in map(Path, extra):
        name = path.stem
        if name in MODELS:
            raise CheckpointError(f"a model named {name!r} is already served; rename {path} (the model "
                                  f"name is the file's stem)")
        MODELS[name] = load_served_model(name, path, only_fresh=True)
    if not MODELS:
        raise CheckpointError(f"no model to serve: neither {', '.join(SHIPPED.values())} in {shipped_dir} "
                              f"nor --checkpoint given")
    return MODELS


# ----------------------------------------------------------------------------------------------------
# Prediction: plain functions, the same for the page, gradio_client and the tests.


def _served(model: str) -> ServedModel:
    if model not in MODELS:
        raise gr.Error(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[model]


def _predict(image, backend: str, model: str):
    served = _served(model)
    runtime = served.runtime(backend)
    model_s = 0.0

    def predict_proba(x: np.ndarray) -> np.ndarray:  # the model's calls, timed apart from preprocessing
        nonlocal model_s
        t = time.perf_counter()
        probs = runtime.predict_proba(x)
        model_s += time.perf_counter() - t
        return probs

    t0 = time.perf_counter()
    if isinstance(image, dict) and "path" in image:
        image = image["path"]
    if isinstance(image, (str, os.PathLike)):  # a file: decoded once, for the reading and its thumbnail
        image = open_image(image, reduce=True)
    r = read(image, runtime.spec, predict_proba)  # one digit (exactly as preprocess()), a number, or an object
    total = time.perf_counter() - t0
    preview = np.kron(np.concatenate(r.frames, axis=1), np.ones((PREVIEW_SCALE, PREVIEW_SCALE), np.uint8))
    timing = f"{backend}: {model_s * 1e3:.2f} ms (preprocessing {(total - model_s) * 1e3:.1f} ms)"
    if len(r.frames) > 1:
        timing = f"{len(r.frames)} digits read. {timing}"
    timing = " ".join([*(f"Note: {n}." for n in r.notes), timing])
    return r.confidences, preview, timing, where_found(image, r), digit_by_digit(r, served.spec.class_names)


def digit_by_digit(r: Reading, class_names: list[str]) -> list[tuple[np.ndarray, str]]:
    """The gallery: each digit's 28x28 as the model saw it (enlarged), captioned with its place, its reading
    and the model's confidence in it, "2: 0 (99.7%)"."""
    scale = np.ones((DIGIT_SCALE, DIGIT_SCALE), np.uint8)
    return [(np.kron(f, scale), f"{i + 1}: {class_names[int(p.argmax())]} ({p.max():.1%})")
            for i, (f, p) in enumerate(zip(r.frames, r.probs))]


def _open_upright(source) -> tuple[Image.Image, tuple[int, int]]:
    """One image (path, bytes, FileData dict, PIL, numpy) -> (the PIL image as displayed, i.e. with its EXIF
    orientation applied, a large JPEG decoded at reduced scale; its full size (w, h) as displayed). Only for
    input that preprocessing has already accepted."""
    if isinstance(source, dict):
        source = source["path"]
    if isinstance(source, (str, os.PathLike, bytes, bytearray)):
        img = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
        size = img.size
        img.draft(img.mode, (THUMBNAIL, THUMBNAIL))  # libjpeg skips most of a photo's pixels
    elif isinstance(source, Image.Image):  # open_image's: a large JPEG decoded at reduced scale
        img, size = source, source.info.get("full_size", source.size)
    else:  # a numpy array (or tensor), as decode takes it
        a = np.asarray(source)
        a = a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a
        if a.dtype != np.uint8:
            top = 65535.0 if a.dtype == np.uint16 else 1.0 if a.dtype.kind == "f" and a.max(initial=0) <= 1 else 255.0
            a = (np.clip(a.astype(np.float32) / top, 0, 1) * 255).round().astype(np.uint8)
        img = Image.fromarray(a)
        size = img.size
    upright = ImageOps.exif_transpose(img)
    return upright, size[::-1] if upright.size != img.size else size


def _thumbnail(image) -> tuple[Image.Image, tuple[int, int]]:
    """The input as a person sees it -> (RGB thumbnail on white, longest side at most THUMBNAIL (small inputs
    enlarged by a whole factor, nearest-neighbour), the original's upright size (w, h)). A sketch is its
    composite, or its background and layers laid on one another."""
    parts = [image]
    if is_sketch(image):
        parts = [image.get("composite")] if image.get("composite") is not None else [
            image.get("background"), *(image.get("layers") or [])]
    parts = [p for p in parts if p is not None]
    if len(parts) == 1 and isinstance(parts[0], np.ndarray) and parts[0].dtype == np.uint8 and (
            parts[0].ndim == 2 or parts[0].ndim == 3 and parts[0].shape[2] in (3, 4)):
        return _thumbnail_array(parts[0])  # the sketchpad's composite: OpenCV, 2x faster than PIL
    canvas, size = None, None
    for part in parts:
        img, full = _open_upright(part)
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # high bit depth: stretched as decode does
            a = np.asarray(img, np.float32)
            img = Image.fromarray(((a - a.min()) / max(float(a.max() - a.min()), 1e-6) * 255).astype(np.uint8))
        img = img.convert("RGBA" if img.has_transparency_data else "RGB")
        if canvas is None:
            size, longest = full, max(img.size)
            fit = THUMBNAIL / longest if longest > THUMBNAIL else max(1, THUMBNAIL // longest)
            thumb = (max(1, round(img.width * fit)), max(1, round(img.height * fit)))
            canvas = Image.new("RGBA", thumb, (255, 255, 255, 255))
        img = img.resize(canvas.size, Image.Resampling.BOX if img.width > canvas.width else Image.Resampling.NEAREST)
        if img.mode == "RGB" and len(parts) == 1:  # an opaque upload on white is itself: no compositing
            return img, size
        canvas.alpha_composite(img.convert("RGBA"))
    return canvas.convert("RGB"), size


def _thumbnail_array(a: np.ndarray) -> tuple[Image.Image, tuple[int, int]]:
    """_thumbnail of one uint8 gray, RGB or RGBA array: laid on white (255 - (255 - colour) x alpha), then
    resized as PIL would (area average down, nearest-neighbour up by a whole factor)."""
    if a.ndim == 2:
        a = cv2.cvtColor(a, cv2.COLOR_GRAY2RGB)
    elif a.shape[2] == 4:
        alpha = cv2.cvtColor(cv2.extractChannel(a, 3), cv2.COLOR_GRAY2RGB)
        a = cv2.bitwise_not(cv2.multiply(cv2.bitwise_not(cv2.cvtColor(a, cv2.COLOR_RGBA2RGB)), alpha, scale=1 / 255))
    height, width = a.shape[:2]
    longest = max(width, height)
    fit = THUMBNAIL / longest if longest > THUMBNAIL else max(1, THUMBNAIL // longest)
    thumb = (max(1, round(width * fit)), max(1, round(height * fit)))
    if thumb != (width, height):
        a = cv2.resize(a, thumb, interpolation=cv2.INTER_AREA if width > thumb[0] else cv2.INTER_NEAREST)
    return Image.fromarray(a), (width, height)


def where_found(image, r: Reading) -> np.ndarray:
    """RGB uint8 thumbnail of the input with a box around the ink that was framed for the model, one per
    digit of a number: what lies outside them (a stray mark, a ruled line, the table) was left out, and a box
    in the wrong place shows why a reading went wrong."""
    thumb, (width, height) = _thumbnail(image)
    fx, fy = r.ink.scale * thumb.width / width, r.ink.scale * thumb.height / height  # ink map -> thumbnail
    w = BOX_WIDTH
    draw = ImageDraw.Draw(thumb)
    for box in (b for b in r.boxes if b is not None):
        x0, y0, x1, y1 = int(box[0] * fx), int(box[1] * fy), int(np.ceil(box[2] * fx)), int(np.ceil(box[3] * fy))
        draw.rectangle([max(x0 - w, 0), max(y0 - w, 0), min(x1 + w - 1, thumb.width - 1),
                        min(y1 + w - 1, thumb.height - 1)], outline=BOX_COLOUR, width=w)
    return np.asarray(thumb)


def predict(image, backend: str = DEFAULT_BACKEND, model: str = DEFAULT_MODEL):
    """Any image (sketchpad value, path, PIL, numpy) -> ({class: prob} for one digit or object, {number: prob}
    for the three likeliest readings of several digits; preview; timing text with any notes; where_found;
    digit_by_digit)."""
    try:
        return _predict(image, backend, model)
    except PreprocessError as e:  # says what to do: "draw something first", "scale it down", ...
        raise gr.Error(str(e)) from None


def predict_sketch(sketch, backend: str = DEFAULT_BACKEND, model: str = DEFAULT_MODEL):
    """Read a drawing: the sketchpad value {"background", "layers", "composite"}."""
    return predict(sketch, backend, model)


def predict_upload(image, backend: str = DEFAULT_BACKEND, model: str = DEFAULT_MODEL):
    """Read an uploaded, pasted or webcam image (a file path)."""
    return predict(image, backend, model)


def predict_live(image, backend: str, model: str):
    """The page's own live events: an empty canvas (just cleared) blanks the outputs instead of raising."""
    try:
        return _predict(image, backend, model)
    except EmptyInputError:
        return None, None, EMPTY_HINT, None, None
    except PreprocessError as e:
        raise gr.Error(str(e)) from None


# ----------------------------------------------------------------------------------------------------
# Input components that refuse bad files with a message instead of Gradio's generic "Error"


def _sources(payload, blob_storage: dict) -> list:
    """Every image file (path or bytes) inside an Image or ImageEditor payload."""
    if payload is None:
        return []
    if getattr(payload, "path", None):
        return [payload.path]
    if getattr(payload, "id", None) and payload.id in blob_storage:  # sketch sent as blobs by the page
        cached = blob_storage[payload.id]
        return [b for b in (cached.background, *cached.layers, cached.composite) if b is not None]
    files = (getattr(payload, "background", None), *(getattr(payload, "layers", None) or []),
             getattr(payload, "composite", None))
    return [f.path for f in files if f is not None and getattr(f, "path", None)]


class _ClearFileErrors:
    """Refuse a file that is not an image, is damaged, or is gigantic before Gradio decodes it, with the
    engine's own message (which says what to do)."""

    def preprocess(self, payload):
        sources = _sources(payload, getattr(self, "blob_storage", {}))
        try:
            for source in sources:  # header only: the pixel count is known before anything is decoded
                with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                    check_size(img)
            return super().preprocess(payload)
        except PreprocessError as e:
            raise gr.Error(str(e)) from None
        except gr.Error:
            raise
        except Exception as e:
            for source in sources:  # let the engine explain which file is broken and how
                try:
                    open_image(source)
                except PreprocessError as explained:
                    raise gr.Error(str(explained)) from None
            raise gr.Error(f"could not read that image ({e}); upload a PNG, JPEG, HEIC, WebP, GIF or BMP") from None


class SketchInput(_ClearFileErrors, gr.Sketchpad):
    def get_block_name(self) -> str:  # render with the same front-end component as gr.Sketchpad
        return "imageeditor"

    get_block_class = get_block_name


class UploadInput(_ClearFileErrors, gr.Image):
    def get_block_name(self) -> str:
        return "image"

    get_block_class = get_block_name


BROWSERS_SHOW = {"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "AVIF", "ICO"}  # formats every current browser draws


def viewable_upload(path: str | None, cache_dir: str):
    """An upload the browser cannot draw (an iPhone's HEIC, a TIFF) is swapped in the upload box for an
    upright copy it can: a JPEG at quality 95 and full size (a PNG, for an image with transparency), which
    later readings (another model or backend) read in its place. Anything else, or a file that cannot be
    read (the reading says why), is left as it is. UploadInput has refused an oversized file before this."""
    if not path:
        return gr.skip()
    try:
        with Image.open(path) as img:
            if img.format in BROWSERS_SHOW:
                return gr.skip()
            upright = ImageOps.exif_transpose(img)
            alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
            copy = upright.convert("RGBA" if alpha else "RGB")
    except Exception:
        return gr.skip()
    if alpha:
        return _save_pil_to_cache_atomically(copy, cache_dir, Path(path).stem, "png")
    return _save_pil_to_cache_atomically(copy, cache_dir, Path(path).stem, "jpeg", quality=95)


# ----------------------------------------------------------------------------------------------------
# The page

# Gradio 6 shows the sketchpad with no tool selected (on load and again after "clear"), so a first stroke
# would do nothing: whenever the empty canvas asks for a tool, select the brush.
SELECT_BRUSH_JS = """
() => {
  const ensureBrush = () => {
    const pad = document.querySelector('#sketch');
    const brush = pad && pad.querySelector('button[aria-label="Brush"]');
    if (brush && !brush.classList.contains('highlight') && pad.querySelector('.empty.wrap')) brush.click();
  };
  new MutationObserver(ensureBrush).observe(document.body, {childList: true, subtree: true});
  ensureBrush();
}
"""

HOW_IT_WORKS = """
### How it works
1. **Train** a small CNN in PyTorch on MNIST (or Fashion-MNIST); the checkpoint carries the model's
   input spec: size, mean/std and class names.
2. **Export** it once to TorchScript and ONNX (plus an int8-quantised ONNX), each verified against PyTorch.
3. **Serve** it here: every backend is loaded once at start-up and receives exactly the same input.

Whatever you draw or upload goes through **one preprocessing function** (shared by every backend, the
benchmark and the tests) that makes it look like MNIST: ink from the sketch's alpha channel (or from the
image, dark-on-light or light-on-dark, decided automatically), cropped to the ink, scaled so its longest
side is 20 px keeping the aspect ratio, stroke weight brought near MNIST's, centred by centre of mass in
28x28, then normalised with the model's own mean and std. Clothing is framed the way Fashion-MNIST was
made instead: longest side to the full 28 px, centred by its bounding box, no stroke change (the model's
input spec says which). The preview shows exactly what the model saw; beside it, the input with a red box
where the digit was found (what lies outside it, a stray mark or a ruled line, was left out).

**Whole numbers**: several digits side by side are split apart (connected ink; a digit's parts merged back,
touching digits cut where the ink is thin and the model reads the pieces best), each is framed and read like
a single digit, and the answer is the number, left to right, with its three likeliest readings; below, each
digit as the model saw it with its own confidence, and a box per digit on the input. At most 12 digits are
read; the text says when a limit was met. The clothing model gives one answer per image.
The time shown is the model call alone on the chosen backend, with preprocessing timed separately.
"""


def _usable_backend(model: str, backend: str) -> str:
    """The chosen backend, or the default when the model does not offer it (a user checkpoint's exports)."""
    offered = _served(model).offered
    return backend if backend in offered else DEFAULT_BACKEND if DEFAULT_BACKEND in offered else offered[0]


def _backend_choices(model: str, backend: str):
    return gr.Dropdown(choices=_served(model).offered, value=_usable_backend(model, backend))


# Each live request's place in the order the user acted: every live trigger first counts itself in the page
# (a JavaScript-only listener, registered before the prediction's own: the page runs one trigger's listeners
# in order), and the prediction sends the count with its inputs. The count is read the moment its inputs are
# gathered, while the sketch itself may take seconds more to be exported and uploaded on a busy machine; so
# it is the order the user acted in, not the order requests arrive or finish in.
COUNT_JS = "(n) => (n || 0) + 1"


class LatestRequest:
    """The newest live request each page (Gradio session) has started: a request the page sent earlier than
    one already started is stale and leaves the outputs alone, whether it arrives late (its sketch still
    uploading) or finishes late (two run at once). Bounded: the least recently heard-from sessions are
    forgotten (their next request is then simply read)."""

    def __init__(self, sessions: int = 4096):
        self.newest: OrderedDict[str, float] = OrderedDict()
        self.sessions, self.lock = sessions, threading.Lock()

    def start(self, session: str | None, seq: float | None) -> bool:
        """Record `seq` as the session's newest; False when the page has sent a newer one already."""
        if session is None or seq is None:  # no number (no session, or JavaScript off): no order to keep
            return True
        with self.lock:
            if seq < self.newest.get(session, float("-inf")):
                return False
            self.newest[session] = seq
            self.newest.move_to_end(session)
            while len(self.newest) > self.sessions:
                self.newest.popitem(last=False)
            return True

    def is_newest(self, session: str | None, seq: float | None) -> bool:
        if session is None or seq is None:
            return True
        with self.lock:
            return self.newest.get(session, seq) <= seq


LATEST = LatestRequest()


def _if_visible(tab: str):
    """The page's listener for one input (tab "sketch" or "upload"): predicts while that tab is the one shown
    and leaves the outputs alone otherwise. The page gathers an event's inputs in the browser before it
    sends them (a sketch is uploaded first), so a request can arrive after the user has moved on; each
    request is checked against the tab shown when it runs, not when it left, and against the page's newer
    requests (LatestRequest): an answer to an input the user has since changed never lands last."""
    def listener(seq: float | None, source: str, image, backend: str, model: str, request: gr.Request):
        skip = (gr.skip(),) * len(OUTPUTS)
        session = getattr(request, "session_hash", None)
        if source != tab or not LATEST.start(session, seq):
            return skip
        # (counted as newest even when the page reads its own canvas: a server answer sent before the user
        # chose the in-browser backend must not land over the page's own)
        if backend == BROWSER_BACKEND and tab == "sketch":  # the page reads its own canvas
            return skip
        if backend == BROWSER_BACKEND:  # uploads are read on the server, by the same .onnx file
            backend = SERVER_FALLBACK
        try:
            outputs = predict_live(image, _usable_backend(model, backend), model)
        except gr.Error:  # the message is for the input shown: a stale one's is not raised
            if LATEST.is_newest(session, seq):
                raise
            return skip
        return outputs if LATEST.is_newest(session, seq) else skip
    listener.__name__ = f"predict_{tab}_if_visible"
    return listener


def run_benchmark_tab(model: str, progress=gr.Progress()):
    """export.benchmark's quick run on this machine for the chosen model: its table and plot."""
    try:
        result = run_benchmark(_served(model).checkpoint, quick=True, progress=progress)
    except (MissingExportError, StaleExportError, FileNotFoundError, ValueError) as e:
        raise gr.Error(f"cannot benchmark {model}: {e}") from None
    # Handed to Gradio as an image, not a path: Gradio caches it (and ages it out, --cache-minutes) like
    # every preview, and no temp dir of ours outlives the request.
    with tempfile.TemporaryDirectory(prefix="benchmark_") as tmp:
        plot_results(result, Path(tmp) / "benchmark.png")
        with Image.open(Path(tmp) / "benchmark.png") as img:
            plot = img.convert("RGB")
    return f"```\n{format_table(result)}\n```", plot


def build_demo(delete_cache: tuple[float, float] | None = None) -> gr.Blocks:
    """The page; delete_cache: Gradio's (every N s, delete cached files older than M s), None keeps them."""
    names = list(MODELS)
    model0 = DEFAULT_MODEL if DEFAULT_MODEL in MODELS else names[0]
    offered0 = MODELS[model0].offered
    backend0 = DEFAULT_BACKEND if DEFAULT_BACKEND in offered0 else offered0[0]
    galleries = {"mnist": "Real MNIST test digits", "fashion": "Real Fashion-MNIST test items"}
    examples: list[gr.Examples] = []

    with gr.Blocks(title="Digits: train in PyTorch, ship on ONNX Runtime", delete_cache=delete_cache) as demo:
        gr.Markdown("# Digits\nDraw a digit (or upload an image): the prediction updates as you draw.")
        source = gr.State("sketch")  # the tab the user is looking at: "sketch" (Draw) or "upload"
        seq = gr.Number(visible=False)  # each live request's place in the order the user acted (COUNT_JS)
        model = gr.Dropdown(names, value=model0, label="Model", render=False, elem_id="model")
        backend = gr.Dropdown(offered0, value=backend0, label="Backend", render=False, elem_id="backend")
        with gr.Tab("Predict"):
            with gr.Row():
                with gr.Column(scale=3):
                    with gr.Tabs():
                        with gr.Tab("Draw") as draw_tab:
                            sketch = SketchInput(
                                elem_id="sketch", label="Draw here", type="numpy", image_mode="RGBA", height=SKETCH_HEIGHT,
                                canvas_size=CANVAS, fixed_canvas=True, layers=False, transforms=(),
                                brush=gr.Brush(default_size=BRUSH_RADIUS, colors=["#000000"],
                                               color_mode="fixed"),
                                eraser=gr.Eraser(default_size=BRUSH_RADIUS))
                            web_pad = browser_pad({n: (m.checkpoint, m.spec) for n, m in MODELS.items()
                                                   if BROWSER_BACKEND in m.offered}, model0, backend0,
                                                  sketch_id="sketch", brush_radius=BRUSH_RADIUS, elem_id="web_pad")
                        with gr.Tab("Upload") as upload_tab:
                            upload = UploadInput(
                                elem_id="upload", label="Image file (or paste, or webcam)", type="filepath",
                                image_mode=None, sources=["upload", "clipboard", "webcam"], height=320)
                            for name, title in galleries.items():
                                files = sorted(EXAMPLES_DIR.glob(f"{name}_*.png"))
                                if name in MODELS and files:
                                    # The model is a column of the example: one update sets the image and the
                                    # model together, and the prediction runs after it (below) with both.
                                    examples.append(gr.Examples([[str(f), name] for f in files], inputs=[upload, model],
                                                                label=title, cache_examples=False,
                                                                examples_per_page=10))
                    with gr.Row():
                        model.render()
                        backend.render()
                with gr.Column(scale=2):
                    label = gr.Label(num_top_classes=3, label="Top 3", elem_id="label")
                    with gr.Row():
                        preview = gr.Image(label="What the model saw (28x28 per digit)", type="numpy",
                                           format="png", interactive=False, height=240, elem_id="preview")
                        found = gr.Image(label="Where the digits were found", type="numpy", format="png",
                                         interactive=False, height=240, elem_id="found")
                    timing = gr.Textbox(label="Inference time (and notes)", interactive=False, elem_id="timing")
                    digits = gr.Gallery(label="Digit by digit, as the model saw each", columns=6, height="auto",
                                        object_fit="contain", format="png", elem_id="digits")
            gr.Markdown(HOW_IT_WORKS)
        with gr.Tab("Benchmark"):
            gr.Markdown("Times every backend on this machine on the same real test images, for the model "
                        "chosen on the Predict tab (quick run: batch sizes up to 64, a few seconds; it "
                        "shares the CPU with the app, so one run at a time).")
            bench_button = gr.Button("Run quick benchmark")
            bench_table = gr.Markdown()
            bench_plot = gr.Image(label="Throughput and latency", type="filepath", interactive=False)

        outputs = [label, preview, timing, found, digits]
        assert len(outputs) == len(OUTPUTS)
        # Live: every stroke, upload, example, backend or model choice and tab switch predicts the input on
        # the visible tab; one listener per input (see _if_visible: the hidden sketchpad fires a late
        # "change"). Only the user's own changes trigger them (.input, not .change): an example sets the
        # image and the model in one update, and the model's .change fired before the image had its new
        # value (the fashion model read the old digit). "always_last": one input's predictions run one
        # after another, and changes made while one runs collapse into a single next run.
        live = dict(outputs=outputs, api_visibility="private", trigger_mode="always_last",
                    show_progress="hidden", concurrency_id="predict")
        count = dict(fn=None, inputs=seq, outputs=seq, js=COUNT_JS, queue=False, api_visibility="private")
        drawn = _if_visible("sketch"), [seq, source, sketch, backend, model]
        uploaded = _if_visible("upload"), [seq, source, upload, backend, model]
        gr.on([sketch.change, upload.input, backend.input, model.input], **count)  # before the predictions
        gr.on([sketch.change, backend.input, model.input], *drawn, **live)
        gr.on([upload.input, backend.input, model.input], *uploaded, **live)
        upload.upload(lambda path: viewable_upload(path, upload.GRADIO_CACHE), upload, upload, queue=False,
                      api_visibility="private")
        for gallery in examples:  # after the example's image and model are both in place
            gallery.load_input_event.then(**count)
            gallery.load_input_event.then(*uploaded, **live)
        for tab, name, listener in ((draw_tab, "sketch", drawn), (upload_tab, "upload", uploaded)):
            shown = tab.select(lambda name=name: name, None, source, queue=False, api_visibility="private")
            shown.then(**count)
            shown.then(*listener, **live)
        model.change(_backend_choices, [model, backend], backend, queue=False, api_visibility="private")
        wire_browser_pad(web_pad, model, backend, outputs, EMPTY_HINT)
        # The API: strict versions of the same two functions (an empty input is an error for a client).
        api_only = gr.Button(visible=False)
        api_only.click(predict_sketch, [sketch, backend, model], outputs, api_name="predict_sketch",
                       concurrency_id="predict")
        api_only.click(predict_upload, [upload, backend, model], outputs, api_name="predict_upload",
                       concurrency_id="predict")
        demo.load(None, js=SELECT_BRUSH_JS)
        bench_button.click(run_benchmark_tab, [model], [bench_table, bench_plot],
                           api_visibility="private", concurrency_limit=1, concurrency_id="benchmark")
    return demo


# ----------------------------------------------------------------------------------------------------
# Running for weeks behind a public link: a bounded cache and a queue no longer than the wait budget

BUSY = "busy: try again in a moment"


def cache_schedule(minutes: float) -> tuple[float, float] | None:
    """--cache-minutes -> Gradio's delete_cache (every `frequency` s, delete files older than `age` s), so a
    cached upload or preview lives at most age + frequency; 0 or less keeps everything (Gradio's default)."""
    if minutes <= 0:
        return None
    age = minutes * 60
    return min(60.0, max(age / 4, 0.5)), age


def sweep_empty_folders(demo: gr.Blocks, frequency: float) -> threading.Thread:
    """Remove the folders that Gradio's delete_cache leaves behind.

    Every upload and preview is stored in a folder of its own (named by its content hash); delete_cache
    removes the file, not the folder, and each empty folder still holds an inode and a disk block. Only
    folders of files this app tracked are touched (the cache dir may be shared with other Gradio apps),
    once they have stayed empty for `frequency` s.
    """
    folders: set[Path] = set()

    def sweep() -> None:
        while True:
            time.sleep(frequency)
            for files in list(demo.temp_file_sets):
                folders.update(Path(f).parent for f in list(files))
            for folder in list(folders):
                try:
                    if time.time() - folder.stat().st_mtime > frequency:
                        folder.rmdir()  # fails while a file is in it
                        folders.discard(folder)
                except FileNotFoundError:
                    folders.discard(folder)
                except OSError:
                    pass  # not empty: still in use

    thread = threading.Thread(target=sweep, name="cache-folder-sweeper", daemon=True)
    thread.start()
    return thread


def keep_freed_memory(mmap_mb: int = 8, trim_mb: int = 32) -> bool:
    """Let glibc keep the memory a request frees for the next request (Linux with glibc; elsewhere a no-op).

    A reading works on a few dozen arrays of about a megabyte each (a 560x560 drawing as float32 is 1.25 MB).
    With glibc's defaults such an array is mapped afresh from the system, and freed memory at the top of a
    heap is handed back, so every request touches its pages for the first time again: some 300 page faults
    per array, about 4 ms of a sketch's round trip on the 2-core machine (scripts/bench_roundtrip.py). Here
    arrays up to `mmap_mb` come from the heap, and up to `trim_mb` of free memory stays mapped in each of
    glibc's arenas. The arenas are capped at two per core (glibc's default is eight per core, about one per
    worker thread): each new worker thread of the server's pool took an arena of its own and kept its free
    memory, so resident memory rose in steps of about 10 MB as the pool grew over a long run (the soak test's
    second half: +15 to +20 MB on some runs). Returns whether glibc took the settings."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # malloc.h
    return (bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_mb << 20)) & bool(libc.mallopt(M_TRIM_THRESHOLD, trim_mb << 20))
            & bool(libc.mallopt(M_ARENA_MAX, 2 * (os.cpu_count() or 1))))


def refuse_when_full(demo: gr.Blocks, message: str = BUSY) -> None:
    """A request that finds the queue full is answered at once with `message`, as a gr.Error would be.

    Gradio itself refuses it with HTTP 503, and each client words that its own way: the page shows "This
    application is currently busy. Please try again.", gradio_client raises QueueError("Queue is full!
    Please try again."), plain HTTP gets "Queue is full. Max size is N ...". Instead the request is
    registered as an event that has already failed: the page shows `message`, gradio_client raises
    AppError(message), /gradio_api/call/... streams `event: error` with `message`.

    Also: Gradio keeps an empty set of pending event ids for every session it has seen (each API call is a
    session of its own), about 300 bytes per request, forever; those are dropped here, in the event loop
    that owns them (an empty set means no event of that session is waiting or running).
    """
    import asyncio

    from gradio import route_utils
    from gradio.queueing import Event
    from gradio.server_messages import ProcessCompletedMessage
    from gradio.utils import error_payload

    queue, push = demo._queue, demo._queue.push

    async def push_or_refuse(body, request, username):
        if len(queue.pending_event_ids_session) > 1000:
            for session in [s for s, ids in queue.pending_event_ids_session.items() if not ids]:
                del queue.pending_event_ids_session[session]
        ok, event_id, state = await push(body, request, username)
        if state != "queue_full":
            return ok, event_id, state
        event = Event(body.session_hash, route_utils.get_fn(demo, None, body), request, username)
        body.session_hash = event.session_hash  # as Queue.push registers an event, so its stream finds it
        async with queue.pending_message_lock:
            queue.pending_messages_per_session.setdefault(event.session_hash, asyncio.Queue())
            queue.pending_event_ids_session.setdefault(event.session_hash, set()).add(event._id)
        content = error_payload(gr.Error(message), show_error=True)
        queue.send_message(event, ProcessCompletedMessage(output=content, title=content["title"], success=False))
        return True, event._id, "success"

    queue.push = push_or_refuse


def measure_throughput(url: str, model: str, backend: str, auth: tuple[str, str] | None, clients: int,
                       seconds: float = 2.0) -> float:
    """Requests per second this server answers end to end (HTTP, queue, preprocessing, model, preview), from
    `clients` threads calling /predict_upload over plain HTTP with an example image for about `seconds`
    (longer on a machine so busy that a request takes longer than that). What else runs on the machine
    counts: measured while it is busy, the queue comes out shorter (pass --throughput to fix it)."""
    import httpx

    example = next(EXAMPLES_DIR.glob("mnist_*.png"))

    def call(http: httpx.Client, image: dict) -> None:
        r = http.post("gradio_api/call/predict_upload", json={"data": [image, backend, model]})
        r.raise_for_status()
        events = http.get(f"gradio_api/call/predict_upload/{r.json()['event_id']}").text
        if "event: complete" not in events:
            raise RuntimeError(f"the start-up request failed: {events[-300:]}")

    timed = {}  # the timed part starts once every client has warmed up
    warm = threading.Barrier(clients, action=lambda: timed.update(start=time.monotonic()))

    def client_loop(_) -> int:
        with httpx.Client(base_url=url, timeout=30) as http:
            if auth:
                http.post("login", data={"username": auth[0], "password": auth[1]}).raise_for_status()
            r = http.post("gradio_api/upload", files={"files": (example.name, example.read_bytes())})
            image = {"path": r.raise_for_status().json()[0], "meta": {"_type": "gradio.FileData"}}
            call(http, image)  # warm-up (first calls of each runtime are slower), not counted
            warm.wait(timeout=60)
            done = 0
            while time.monotonic() < timed["start"] + seconds or not done:  # a busy machine: one each at least
                call(http, image)
                done += 1
            return done

    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(client_loop, range(clients)))
        return done / (time.monotonic() - timed["start"])


# ----------------------------------------------------------------------------------------------------
# Launch


def _reason(e: BaseException) -> str:
    """The whole chain of causes in one line: 'could not get share link (Name or service not known)'."""
    parts = []
    while e is not None:
        parts.append(f"{e}".strip() or type(e).__name__)
        e = e.__cause__ or e.__context__
    return ": ".join(dict.fromkeys(parts))


def open_share_link(demo: gr.Blocks, share_server: str | None = None) -> str | None:
    """Open a public link for a launched demo, as launch(share=True) does, but say why when it cannot."""
    from gradio import networking, tunneling

    where = f"share server {share_server}" if share_server else "gradio.live"
    try:
        url = networking.setup_tunnel(local_host=demo.server_name, local_port=demo.server_port,
                                      share_token=demo.share_token, share_server_address=share_server,
                                      share_server_tls_certificate=None)
    except Exception as e:  # no network, no tunnel client, server refused: all mean "no public link"
        why = _reason(e)
        if not Path(tunneling.BINARY_PATH).exists():
            why += (f"; Gradio's tunnel client is not installed at {tunneling.BINARY_PATH} (it is downloaded "
                    f"from {tunneling.BINARY_URL} on first use, which needs internet access)")
        print(f"warning: no public link could be made through {where}: {why}. The app keeps serving "
              f"locally at {demo.local_url}", file=sys.stderr, flush=True)
        return None
    if share_server:  # a self-hosted frp server speaks plain http unless it was set up with TLS
        url = "http" + url[url.index(":"):]
    demo.share_url = url
    print(f"* Running on public URL: {url}", flush=True)
    return url


def _auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError(f"auth must look like USER:PASS, got {value!r}")
    return user, password


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="interface to listen on; 0.0.0.0 for every interface (default: $GRADIO_SERVER_NAME "
                        "or 127.0.0.1)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                   help="port to listen on (default: $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--share", action="store_true",
                   help="also open a temporary public link through Gradio's share tunnel (default: off)")
    p.add_argument("--share-server", type=_host_port, metavar="HOST:PORT",
                   help="with --share, use this self-hosted frp share server instead of gradio.live "
                        "(default: gradio.live)")
    p.add_argument("--auth", type=_auth, default=os.environ.get(AUTH_ENV), metavar="USER:PASS",
                   help=f"require this login for the page and the API (default: ${AUTH_ENV}, else none)")
    p.add_argument("--max-file-size", default="10mb",
                   help="largest upload accepted, e.g. 5mb or 500kb (default: 10mb)")
    p.add_argument("--checkpoint", action="append", type=Path, default=[], metavar="PATH",
                   help="also serve this checkpoint, named by its file stem; repeatable (default: none)")
    p.add_argument("--checkpoints-dir", type=Path, default=ROOT / "checkpoints",
                   help="folder holding the shipped mnist_cnn.pt and fashion_cnn.pt and their exports "
                        "(default: checkpoints/ beside app.py)")
    p.add_argument("--concurrency", type=int, default=max(2, os.cpu_count() or 1),
                   help="predictions computed at the same time; more requests wait in the queue "
                        "(default: the number of CPU cores, at least 2)")
    p.add_argument("--max-wait", type=float, default=5.0, metavar="SECONDS",
                   help="longest a request should wait in the queue: the queue holds throughput x SECONDS "
                        "requests, and more are refused at once with \"busy: try again in a moment\" "
                        "(default: 5)")
    p.add_argument("--throughput", type=float, metavar="REQ_PER_S",
                   help="requests per second this server answers, for sizing the queue (default: measured "
                        "at start-up, about 2 s of requests to itself)")
    p.add_argument("--queue-size", type=int,
                   help="requests that may wait in the queue before new ones are refused; overrides "
                        "--max-wait and --throughput (default: throughput x max-wait)")
    p.add_argument("--max-sessions", type=int, default=500,
                   help="sessions (page visits and API calls) whose state stays in memory, at about 70 KB "
                        "each; beyond it the least recently used is forgotten (default: 500; Gradio's own "
                        "10000 lets the server grow by some 700 MB)")
    p.add_argument("--cache-minutes", type=float, default=30.0, metavar="M",
                   help="delete uploads and previews older than M minutes while the server runs (fractions "
                        "allowed; 0 keeps them until it stops) (default: 30)")
    args = p.parse_args(argv)
    if isinstance(args.auth, str):  # came from the environment, not yet parsed
        args.auth = _auth(args.auth)
    if args.share_server and not args.share:
        p.error("--share-server only makes sense with --share")
    for flag in ("max_wait", "throughput", "queue_size", "max_sessions"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            p.error(f"--{flag.replace('_', '-')} must be more than 0")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    keep_freed_memory()
    try:
        models = load_models(args.checkpoints_dir, args.checkpoint)
    except CheckpointError as e:
        sys.exit(f"error: {e}")
    for m in models.values():
        print(f"model {m.name}: {m.checkpoint} ({len(m.spec.class_names)} classes), backends: "
              f"{', '.join(m.runtimes)}" + (f"; unavailable: {', '.join(m.problems)}" if m.problems else ""))
    schedule = cache_schedule(args.cache_minutes)
    demo = build_demo(delete_cache=schedule)
    # Predictions share one pool of `concurrency` workers (the runtimes are thread-safe); the benchmark
    # has its own pool of one so it never runs twice at once.
    demo.queue(max_size=args.queue_size, default_concurrency_limit=args.concurrency)
    refuse_when_full(demo)
    demo.launch(server_name=args.host, server_port=args.port, auth=args.auth, share=False,
                max_file_size=args.max_file_size, allowed_paths=[str(EXAMPLES_DIR)],
                prevent_thread_lock=True, show_error=False, quiet=True, state_session_capacity=args.max_sessions)
    if schedule:
        sweep_empty_folders(demo, schedule[0])
        print(f"cache: uploads and previews are deleted {schedule[1] / 60:g} min after they are made "
              f"(checked every {schedule[0]:g} s)")
    if args.queue_size is None:
        throughput = args.throughput
        if throughput is None:
            served = models[DEFAULT_MODEL] if DEFAULT_MODEL in models else next(iter(models.values()))
            backend = DEFAULT_BACKEND if DEFAULT_BACKEND in served.runtimes else next(iter(served.runtimes))
            try:
                throughput = measure_throughput(demo.local_url, served.name, backend, args.auth,
                                                clients=2 * args.concurrency)
            except Exception as e:  # the server still serves; only the queue's length is a guess then
                throughput = float(args.concurrency)
                print(f"warning: could not measure this server's throughput ({_reason(e)}); the queue is "
                      f"sized for {throughput:g} requests/s, pass --throughput to set it", file=sys.stderr)
        demo._queue.max_size = max(1, round(throughput * args.max_wait))  # queue() is not for a running app
        print(f"queue: {demo._queue.max_size} waiting requests at most ({throughput:.1f} requests/s x "
              f"{args.max_wait:g} s); more are refused at once with \"{BUSY}\"")
    print(f"* Running on local URL:  {demo.local_url}", flush=True)
    if args.share:
        open_share_link(demo, args.share_server)
    demo.block_thread()


if __name__ == "__main__":
    main()
