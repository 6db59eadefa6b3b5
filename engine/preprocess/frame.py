"""Frame step: ink map -> the 28x28 frame a model was trained on (MNIST digit framing or Fashion-MNIST
object framing), with the stroke weight brought to MNIST's.

    from engine.preprocess.frame import to_mnist_frame
    frame = to_mnist_frame(ink)   # float32 (28, 28) in [0, 1]
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.preprocess.decode import EmptyInputError

BOX = 20                       # MNIST's glyph box inside the 28x28 frame
WORK = 4 * BOX                 # working resolution for stroke-weight adjustment
MNIST_STROKE = 7.4             # median 2*area/boundary of MNIST test digits at the working resolution
INK_THRESHOLD = 0.2            # ink below this (after normalisation) is paper noise or JPEG ringing




def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize float array to (w, h); area averaging when shrinking (anti-aliasing), bilinear when growing."""
    w, h = size
    shrinking = w < a.shape[1] or h < a.shape[0]
    img = Image.fromarray(a.astype(np.float32), mode="F")
    return np.asarray(img.resize((w, h), Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR),
                      dtype=np.float32)


def _bbox(ink: np.ndarray, thr: float = INK_THRESHOLD) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the ink over thr, or None (OpenCV's bounding rectangle: no index arrays built)."""
    x, y, w, h = cv2.boundingRect((ink > thr).astype(np.uint8))
    if w == 0:
        return None
    return y, y + h, x, x + w


def ink_box(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) in ink-map pixels, x1 and y1 exclusive: the box the framing crops to (the ink over
    INK_THRESHOLD); None when there is no ink."""
    bb = _bbox(ink)
    return None if bb is None else (int(bb[2]), int(bb[0]), int(bb[3]), int(bb[1]))


def _fit(ink: np.ndarray, longest: int, keep_thin: bool = False) -> np.ndarray:
    """Crop to the ink and scale so the longest side is `longest` pixels, keeping the aspect ratio.

    keep_thin: shrink by max-pooling, so a 3 px pen line on a 1000 px canvas survives as a full-strength
    1 px line (area averaging would fade it below the ink threshold) and its weight can be fixed later.
    """
    bb = _bbox(ink)
    if bb is None:
        raise EmptyInputError("draw something first: no ink was found in the image")
    y0, y1, x0, x1 = bb
    crop = ink[y0:y1, x0:x1]
    h, w = crop.shape
    s = longest / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    if keep_thin and s < 1:
        t = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))[None, None]
        return F.adaptive_max_pool2d(t, (size[1], size[0]))[0, 0].numpy()
    return _resize(crop, size)


def stroke_width(ink: np.ndarray) -> float:
    """2 * area / boundary of the binarised ink: the width of a long stroke, in pixels."""
    b = (ink > 0.5).astype(np.uint8)
    area = int(np.count_nonzero(b))
    if area == 0:
        return 0.0
    # pixels whose 3x3 neighbourhood (zeros beyond the edge) leaves the ink; OpenCV's morphology on small
    # maps costs microseconds where torch's pooling costs a millisecond per call
    eroded = cv2.erode(b, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    boundary = area - int(np.count_nonzero(eroded))
    return float(np.float32(2 * area) / np.float32(max(boundary, 1)))


def _morph(ink: np.ndarray, radius: int, dilate: bool) -> np.ndarray:
    """Dilate or erode by a (2 radius + 1) square, on the ink padded by `radius` zeros (a dilated glyph may
    grow past its crop)."""
    t = cv2.copyMakeBorder(np.asarray(ink, np.float32), *(radius,) * 4, cv2.BORDER_CONSTANT, value=0)
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.dilate(t, k) if dilate else cv2.erode(t, k)


def normalize_stroke(ink: np.ndarray, target: float = MNIST_STROKE) -> np.ndarray:
    """Dilate thin strokes and erode fat ones towards MNIST's weight (ink already at WORK scale)."""
    w = stroke_width(ink)
    if w < 0.75 * target:
        ink = _morph(ink, max(1, round((target - w) / 2)), dilate=True)
    elif w > 1.4 * target:
        ink = _morph(ink, max(1, round((w - target) / 2)), dilate=False)
    return ink


def to_mnist_frame(ink: np.ndarray, size: int = 28, box: int = BOX) -> np.ndarray:
    """Ink map -> float32 (size, size) in [0, 1], the digit in a box x box area centred by mass."""
    work = _fit(ink, WORK, keep_thin=True)
    work = normalize_stroke(work)
    small = _fit(work, box)  # the morphology may have grown the glyph: crop again, then shrink
    h, w = small.shape
    mass = small.sum()
    cy = (small.sum(1) * np.arange(h)).sum() / mass + 0.5
    cx = (small.sum(0) * np.arange(w)).sum() / mass + 0.5
    top = int(round(size / 2 - cy))
    left = int(round(size / 2 - cx))
    top = min(max(top, 0), size - h)  # keep the whole glyph inside the frame
    left = min(max(left, 0), size - w)
    out = np.zeros((size, size), np.float32)
    out[top:top + h, left:left + w] = np.clip(small, 0, 1)
    return out


def to_object_frame(ink: np.ndarray, size: int = 28) -> np.ndarray:
    """Ink map -> float32 (size, size), framed as Fashion-MNIST was made: the object cropped, its longest
    side scaled to the full frame, centred by its bounding box. No stroke-weight change: garments are not
    strokes."""
    small = np.clip(_fit(ink, size), 0, 1)
    h, w = small.shape
    out = np.zeros((size, size), np.float32)
    top, left = (size - h) // 2, (size - w) // 2
    out[top:top + h, left:left + w] = small
    return out


