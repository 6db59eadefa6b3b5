"""Turn any user image into the model's input: the one preprocessing function shared by every backend,
the app, the benchmark, image-folder training and the tests.

    from engine.preprocess import preprocess, extract_ink
    x, preview = preprocess(image, spec)   # x: float32 (1, 1, 28, 28) normalised; preview: uint8 (28, 28)
    ink = extract_ink(image)               # Ink(ink=HxW float32 map, scale, kind): the cleaned ink

`image` may be a Gradio sketchpad value (dict with "layers"/"composite"), a PIL image, a numpy array or
a file path. Data flows one way through the package's modules:

1. decode.py: open, check the size, honour EXIF, shrink huge images -> gray + alpha in [0, 1];
2. ink.py: gray/alpha -> ink map (1 = ink);
3. frame.py: crop to the ink, stroke weight brought to MNIST's, 20 px box, centre of mass in 28x28 (the
   way MNIST itself was made), or Fashion-MNIST's object framing;
4. here: normalise with the model's own mean/std.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.models import InputSpec
from engine.preprocess.decode import (MAX_PIXELS, SHRINK_PIXELS, EmptyInputError, PreprocessError, check_size,
                                      open_image)
from engine.preprocess.frame import BOX, stroke_width, to_mnist_frame, to_object_frame
from engine.preprocess.ink import ink_map, raw_ink

__all__ = ["preprocess", "extract_ink", "Ink", "frame", "PreprocessError", "EmptyInputError", "check_size",
           "open_image", "ink_map", "stroke_width", "to_mnist_frame", "to_object_frame", "MAX_PIXELS",
           "SHRINK_PIXELS"]


@dataclass
class Ink:
    """The ink of one input. ink: float32 HxW in [0, 1]; scale: original image pixels per ink pixel;
    kind: "sketch" or "image"."""
    ink: np.ndarray
    scale: float
    kind: str


def extract_ink(image) -> Ink:
    """Any supported input -> its ink map (see Ink)."""
    if image is None:
        raise EmptyInputError("draw something first (or upload an image)")
    ink, scale, kind = raw_ink(image)
    return Ink(ink, scale, kind)


def frame(ink: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Ink map -> float32 (spec.height, spec.height) frame in [0, 1], framed the way the model was trained."""
    if spec.layout == "object":
        return to_object_frame(ink, size=spec.height)
    if spec.layout == "digit":
        return to_mnist_frame(ink, size=spec.height, box=round(spec.height * BOX / 28))
    raise ValueError(f"unknown input layout {spec.layout!r}; expected 'digit' or 'object'")


def preprocess(image, spec: InputSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Any user image -> (normalised float32 (1, 1, 28, 28), uint8 (28, 28) preview of what the model sees)."""
    spec = spec or InputSpec()
    out = frame(extract_ink(image).ink, spec)
    x = ((out - spec.mean) / spec.std).astype(np.float32)[None, None]
    return x, (out * 255).round().astype(np.uint8)
