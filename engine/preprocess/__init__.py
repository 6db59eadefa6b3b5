"""Turn any user image into the model's input: the one preprocessing function shared by every backend,
the app, the benchmark, image-folder training and the tests.

    from engine.preprocess import preprocess, extract_ink
    x, preview = preprocess(image, spec)   # x: float32 (1, 1, 28, 28) normalised; preview: uint8 (28, 28)
    ink = extract_ink(image)               # Ink(ink=HxW float32 map, scale, kind): the cleaned ink
    ink = extract_ink(image, line=True)    # ... and ink.line: with the next digits of a number (engine.reading)
    x, preview, ink = preprocess_ink(image, spec)  # both at once; ink_box(ink.ink): where the framed ink is

`image` may be a Gradio sketchpad value (dict with "layers"/"composite"), a PIL image, a numpy array or
a file path. Data flows one way through the package's modules:

1. decode.py: open, check the size, honour EXIF, shrink huge images -> gray + alpha in [0, 1];
2. ink.py: planes -> ink map (1 = ink): light normalised locally, polarity, threshold;
3. clean.py: ruled lines, the table around the page and stray marks removed;
4. frame.py: crop to the ink, stroke weight brought to MNIST's, 20 px box, centre of mass in 28x28 (the
   way MNIST itself was made), or Fashion-MNIST's object framing;
5. here: normalise with the model's own mean/std.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.models import InputSpec
from engine.preprocess.clean import off_page, writing
from engine.preprocess.decode import (MAX_PIXELS, SHRINK_PIXELS, Decoded, EmptyInputError, PreprocessError,
                                      check_size, decode_window, open_image)
from engine.preprocess.frame import BOX, INK_THRESHOLD, ink_box, stroke_width, to_mnist_frame, to_object_frame
from engine.preprocess.ink import ink_from_planes, ink_map, raw_ink, stands_out, unpad

__all__ = ["preprocess", "preprocess_ink", "extract_ink", "Ink", "frame", "model_input", "seen", "ink_box", "no_ink",
           "PreprocessError",
           "EmptyInputError", "check_size", "open_image", "ink_map", "stroke_width", "to_mnist_frame",
           "to_object_frame", "MAX_PIXELS", "SHRINK_PIXELS"]

SMALL_WRITING = 28   # writing smaller than this (ink-map pixels, its longest side) in a reduced-scale upload
READ_AT = 64         # ... is read again where it is, finely enough to be about this tall,
WINDOW = 5           # ... in a window this many times its size, and at least this many pixels wide there
WINDOW_MIN = 384     # (a ruled line must be long against its width to be told from a stroke)
CLOSER_GROWTH = 3    # writing the window finds this many times the reduced read's size is not that writing
MIN_HEIGHT = 8       # writing in a photo or scan less than this many (original) pixels tall is no digit,
AT_FRAME = 0.35      # ... nor writing that touches the image's edge and spans less than this share of its shorter side


@dataclass
class Ink:
    """The cleaned ink of one input.

    ink: float32 (H, W) in [0, 1], 1 = ink; only the ink that belongs to the writing (ruled/margin lines,
        the table around the page, specks and stray taps away from the writing are 0). Not cropped: it
        covers the whole (upright, possibly shrunk) input.
    scale: original image pixels per ink-map pixel (>= 1; > 1 when a large upload was decoded at reduced
        scale or shrunk). Ink-map pixel (x, y) covers original pixels [x*scale, (x+1)*scale). "Original"
        means the image as displayed, i.e. after its EXIF orientation is applied.
    kind: "sketch" (a sketchpad value: the ink is its layers' alpha) or "image" (an upload, file or array).
    line: with extract_ink(..., line=True), the ink of the writing's whole line: `ink` and the next digits of
        a number beside it (clean.keep_writing's line mode; engine.reading splits it into digits); else None.
    """
    ink: np.ndarray
    scale: float
    kind: str
    line: np.ndarray | None = None


def extract_ink(image, line: bool = False) -> Ink:
    """Any supported input -> its cleaned ink (see Ink). frame(extract_ink(image).ink, spec) is exactly what
    preprocess() gives the model. line: also Ink.line, from the same extraction (Ink.ink may then be empty
    where the line is not: a faint haze tied the writing to the image's edge). Raises EmptyInputError when
    there is nothing (empty canvas, blank page)."""
    if image is None:
        raise EmptyInputError("draw something first (or upload an image)")
    ink, scale, kind, planes = raw_ink(image)
    ink, writing_line = (None if a is None else unpad(a, planes) for a in _writing(ink, planes, line))
    closer = None
    if planes is not None and scale > 1:  # an upload read at reduced scale: is its writing too small there?
        closer = _read_closer(image, ink, scale, line)
        if closer is not None:
            ink, writing_line, scale = closer
    if closer is None and planes is not None and planes.contrast is not None:
        # A blank page's grain, or the dark end of its light's gradient, is no writing. The writing and its
        # line are judged apart: the writing may be a speck beside the digit that the line holds.
        contrast = unpad(planes.contrast, planes)
        ink, writing_line = (a if a is None or stands_out(a, contrast) else np.zeros_like(a)
                             for a in (ink, writing_line))
    # No digit is written a few pixels tall: in a photo or a scan such ink is a speck of the paper's grain, or
    # what is left of a ruled line (a sketch's ink is its strokes, as tall as the brush at least).
    boxes = [b for b in (ink_box(ink), None if writing_line is None else ink_box(writing_line)) if b is not None]
    tallest = max((y1 - y0 for _, y0, _, y1 in boxes), default=0)
    if tallest == 0 or (planes is not None and (tallest * scale < MIN_HEIGHT or _cut_by_frame(boxes, ink.shape))):
        raise no_ink(kind)
    return Ink(ink, float(scale), kind, writing_line)


def _cut_by_frame(boxes: list[tuple[int, int, int, int]], shape: tuple[int, int]) -> bool:
    """Is the writing (boxes: its ink boxes) small and at the image's edge? In a photo or scan that is the
    page's grain in a corner, the paper's edge or a grid line's end the clean-up left, not a digit: people
    write a digit inside the picture, and a digit cropped tightly fills a good part of it."""
    h, w = shape
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    at_edge = x0 == 0 or y0 == 0 or x1 == w or y1 == h
    return at_edge and max(x1 - x0, y1 - y0) < AT_FRAME * min(h, w)


def _writing(ink: np.ndarray, planes: Decoded | None, line: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw ink -> (the writing, its whole line or None): the clean-up steps (planes: an opaque image's, which
    ink_from_planes made the ink of; None for a sketch or a transparent drawing)."""
    photo = planes is not None
    page = off_page(ink, planes.gray, planes.dark_ink) if photo else ink  # done once for both
    found = np.minimum(writing(page, photo), 1).astype(np.float32, copy=False)
    if not line:
        return found, None
    whole = np.minimum(writing(page, photo, line=True), 1).astype(np.float32)
    firm = found > INK_THRESHOLD
    if firm.any() and not (whole[firm] > 0).any():
        # The line holds none of the writing: other ink outweighed it there (the line weighs the firm ink
        # alone), such as a shadowed strip at the page's edge. The writing is its own line then.
        whole = found.copy()
    return found, whole


def _read_closer(image, ink: np.ndarray, scale: float, line: bool):
    """A large upload is decoded at reduced scale (decode.py); when the writing found there is smaller than
    SMALL_WRITING (a digit one ruled line high on a whole page, a small digit in a phone photo), its strokes
    have merged: a window around it (WINDOW times its size, so the paper, the ruled lines and the table
    around it are there too; at least WINDOW_MIN pixels) is decoded again, finely enough that the writing is READ_AT pixels tall, and
    cleaned up on its own. -> (writing, line, scale) on a map of the whole image at the finer scale (empty
    when the window holds no writing where the reduced read found it), or None when the writing is not small
    or no finer read is possible."""
    box = ink_box(ink)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    size = max(x1 - x0, y1 - y0)
    if size >= SMALL_WRITING:
        return None
    if isinstance(image, Image.Image) and image.info.get("full_size", image.size) != image.size:
        # open_image's reduced-scale decode (the app decodes an upload once): its file, read again
        image = getattr(image, "filename", "")
        if not image:
            return None
    in_memory = not isinstance(image, (str, os.PathLike, bytes, bytearray, dict))
    factor = 1 if in_memory else 2 ** int(np.clip(np.floor(np.log2(scale * size / READ_AT)), 0, 3))
    if factor >= scale:
        return None
    h, w = (round(n * scale) for n in ink.shape)  # the original (upright) image
    cx, cy = (x0 + x1) / 2 * scale, (y0 + y1) / 2 * scale
    half = max(WINDOW * size * scale, WINDOW_MIN * factor) / 2
    wx0, wy0 = (max(0, int(c - half)) // factor * factor for c in (cx, cy))
    wx1, wy1 = min(w, int(cx + half) + 1), min(h, int(cy + half) + 1)
    d = decode_window(image, (wx0, wy0, wx1, wy1), factor)
    near, near_line = _writing(ink_from_planes(d), d, line)
    shape = (-(-h // factor), -(-w // factor))
    def placed(a: np.ndarray) -> np.ndarray:
        out = np.zeros(shape, np.float32)
        view = out[wy0 // factor:wy0 // factor + a.shape[0], wx0 // factor:wx0 // factor + a.shape[1]]
        view[...] = a[:view.shape[0], :view.shape[1]]
        return out
    # The window is read to see the writing found at reduced scale more finely. When it finds none, or finds
    # ink clear of that place (by more than half the writing's size), what the reduced read took for writing
    # was not there at a finer scale: the paper's grain, or a dash of a faint grid line on a blank page (the
    # window then holds other dashes). Nothing is the answer then, not the reduced read's speck. Nor when it
    # finds ink many times that size (CLOSER_GROWTH; 635 digits read closer measured at most 1.43 times
    # their reduced size): the window cut a form's box, which is then no box to the clean-up (it runs off the
    # window as a ruled line does), while the reduced read had removed it and kept a speck by it.
    # Nor when what it finds does not stand out from the paper around it (ink.stands_out), as in extract_ink.
    found, reach = ink_box(near), size * scale / 2
    if found is not None and not stands_out(near, d.contrast):
        found = None
    if found is not None:  # in the original image's pixels
        fx0, fy0, fx1, fy1 = (wx0 + found[0] * factor, wy0 + found[1] * factor,
                              wx0 + found[2] * factor, wy0 + found[3] * factor)
    if found is None or not (x0 * scale - reach <= fx1 and fx0 <= x1 * scale + reach
                             and y0 * scale - reach <= fy1 and fy0 <= y1 * scale + reach
                             and max(fx1 - fx0, fy1 - fy0) <= CLOSER_GROWTH * size * scale):
        near = np.zeros((1, 1), np.float32)
        near_line = None if near_line is None else near
    return placed(near), None if near_line is None else placed(near_line), float(factor)


def no_ink(kind: str) -> EmptyInputError:
    """The error for an input with no ink (kind: Ink.kind)."""
    return EmptyInputError("no digit found in the image: write or draw one digit, dark on light or light on "
                           "dark, filling a good part of the picture" if kind == "image" else
                           "draw something first: no ink was found in the image")


def frame(ink: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Ink map -> float32 (spec.height, spec.height) frame in [0, 1], framed the way the model was trained."""
    if spec.layout == "object":
        return to_object_frame(ink, size=spec.height)
    if spec.layout == "digit":
        return to_mnist_frame(ink, size=spec.height, box=round(spec.height * BOX / 28))
    raise ValueError(f"unknown input layout {spec.layout!r}; expected 'digit' or 'object'")


def preprocess(image, spec: InputSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Any user image -> (normalised float32 (1, 1, 28, 28), uint8 (28, 28) preview of what the model sees)."""
    x, preview, _ = preprocess_ink(image, spec)
    return x, preview


def preprocess_ink(image, spec: InputSpec | None = None) -> tuple[np.ndarray, np.ndarray, Ink]:
    """preprocess() and the Ink it framed (for the object layout the uncleaned ink, see ink.global_ink), so
    a caller can show where the input's ink was found (ink_box) without preprocessing twice."""
    spec = spec or InputSpec()
    if spec.layout == "object":  # garments, not writing: no stroke clean-up (see ink.global_ink)
        if image is None:
            raise EmptyInputError("draw something first (or upload an image)")
        ink, scale, kind, _ = raw_ink(image, strokes=False)
        ink = Ink(ink.astype(np.float32, copy=False), float(scale), kind)
    else:
        ink = extract_ink(image)
    out = frame(ink.ink, spec)[None]
    return model_input(out, spec), seen(out)[0], ink


def model_input(frames: np.ndarray, spec: InputSpec) -> np.ndarray:
    """float32 (n, h, w) frames in [0, 1] -> the model's batch (n, 1, h, w), normalised with its mean/std."""
    return ((frames - spec.mean) / spec.std).astype(np.float32)[:, None]


def seen(frames: np.ndarray) -> np.ndarray:
    """float32 frames in [0, 1] -> uint8: what the model saw, as an image."""
    return (frames * 255).round().astype(np.uint8)
