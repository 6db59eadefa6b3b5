"""Read a whole number: one image -> its digits, left to right, each read by the model like a single digit.

    from engine.reading import read
    r = read(image, spec, runtime.predict_proba)   # any input preprocess() takes
    r.label, r.confidences      # "2026", {"2026": 0.97, "2028": 0.02, ...}: the three likeliest readings
    r.frames, r.probs, r.boxes  # per digit: the 28x28 the model saw, its class probabilities, its ink box
    r.notes                     # limits met: more digits than MAX_DIGITS, a blob that could not be split
    r.ink                       # the Ink the boxes are in (ink-map pixels; Ink.scale maps them back)

One extraction (extract_ink(image, line=True)) gives the single digit's writing and its whole line; the line
is segmented (engine.preprocess.segment). When it holds one digit, the single digit's writing is read exactly
as preprocess() frames it (so the page, the API and the browser backend agree): its confidences are the
model's class probabilities. Models whose input spec frames objects (Fashion-MNIST), or whose classes are not
the digits 0-9 (an image-folder model of shapes), give one answer per image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from engine.models import InputSpec
from engine.preprocess import Ink, extract_ink, frame, ink_box, model_input, no_ink, preprocess_ink, seen
from engine.preprocess.segment import MAX_DIGITS, segment

TOP_K = 3
DIGITS = [str(d) for d in range(10)]  # the class names of a model that reads numbers


@dataclass
class Reading:
    label: str
    confidences: dict[str, float]         # class -> probability (one answer), or reading -> probability
    frames: list[np.ndarray]              # uint8 (28, 28) per digit, as the model saw it
    probs: np.ndarray                     # (digits, classes)
    boxes: list[tuple[int, int, int, int]]  # per digit: x0, y0, x1, y1 (exclusive) in ink-map pixels
    ink: Ink
    notes: list[str] = field(default_factory=list)


def top_readings(probs: np.ndarray, class_names: list[str], k: int = TOP_K) -> list[tuple[str, float]]:
    """The k likeliest whole readings of a row of digits, their probabilities multiplied (digits read
    independently). A beam of width k over the digits is exact: every prefix of a top-k reading is itself
    among the top k prefixes."""
    beam = [("", 1.0)]
    for p in probs:
        best = np.argsort(p)[::-1][:k]
        beam = sorted(((text + class_names[c], q * float(p[c])) for text, q in beam for c in best),
                      key=lambda r: -r[1])[:k]
    return beam


def _one(label_probs: np.ndarray, spec: InputSpec) -> tuple[str, dict[str, float]]:
    conf = {name: float(p) for name, p in zip(spec.class_names, label_probs)}
    return max(conf, key=conf.get), conf


def _crop(ink: np.ndarray) -> np.ndarray | None:
    """What framing reads of an ink map: its ink box's contents (equal contents, equal frames)."""
    box = ink_box(ink)
    return None if box is None else ink[box[1]:box[3], box[0]:box[2]]


def _read_before(crop: np.ndarray, asked: list[tuple[np.ndarray, np.ndarray, np.ndarray]]):
    """(frame, probs) of the ink map whose crop (see _crop) the model has already read (asked: (ink, frame,
    probs) per ink it was asked about), or None."""
    for other, f, p in asked:
        same = _crop(other)
        if same is not None and same.shape == crop.shape and np.array_equal(same, crop):
            return f, p
    return None


def read(image, spec: InputSpec, predict_proba: Callable[[np.ndarray], np.ndarray],
         max_digits: int = MAX_DIGITS) -> Reading:
    """Any user image -> its Reading (see the module docstring)."""
    if spec.layout != "digit" or list(spec.class_names) != DIGITS:  # objects, or classes other than digits:
        # one answer per image, framed as preprocess() frames them
        x, preview, ink = preprocess_ink(image, spec)
        probs = predict_proba(x)
        return Reading(*_one(probs[0], spec), [preview], probs, [ink_box(ink.ink)], ink)
    ink = extract_ink(image, line=True)

    asked: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # each ink the model has read, its frame, probs

    def classify(inks: list[np.ndarray]) -> np.ndarray:  # each piece's class probabilities
        frames = np.stack([frame(i, spec) for i in inks])
        probs = predict_proba(model_input(frames, spec))
        asked.extend(zip(inks, frames, probs))
        return probs

    seg = segment(ink.line, classify, max_digits)
    box = ink_box(ink.ink)
    if len(seg.pieces) <= 1 and box is not None:  # one digit: exactly as preprocess() reads it
        known = _read_before(ink.ink[box[1]:box[3], box[0]:box[2]], asked)  # the segmentation read it (a lone blob)
        if known is not None:
            frames, probs = known[0][None], known[1][None]
        else:
            frames = frame(ink.ink, spec)[None]
            probs = predict_proba(model_input(frames, spec))
        return Reading(*_one(probs[0], spec), list(seen(frames)), probs, [box], ink, seg.notes)
    if not seg.pieces:  # only specks
        raise no_ink(ink.kind)
    frames = np.stack([frame(p.ink, spec) for p in seg.pieces])
    probs = predict_proba(model_input(frames, spec))
    if len(seg.pieces) == 1:  # one digit, where only the line's clean-up kept it
        return Reading(*_one(probs[0], spec), list(seen(frames)), probs, [seg.pieces[0].box], ink, seg.notes)
    readings = top_readings(probs, spec.class_names)
    return Reading(readings[0][0], dict(readings), list(seen(frames)), probs, [p.box for p in seg.pieces], ink, seg.notes)
