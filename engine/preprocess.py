"""Turn any user image into the model's input: the one preprocessing function shared by every backend,
the app, the benchmark, image-folder training and the tests.

    from engine.preprocess import preprocess
    x, preview = preprocess(image, spec)   # x: float32 (1, 1, 28, 28) normalised; preview: uint8 (28, 28)

`image` may be a Gradio sketchpad value (dict with "layers"/"composite"), a PIL image, a numpy array or
a file path. The steps follow how MNIST itself was made (NIST digits fitted into a 20x20 box keeping
their aspect ratio, anti-aliased, then centred by centre of mass in 28x28), plus what real drawings need:

1. ink: the alpha of the sketch layers; for ordinary images, grayscale with the polarity decided by the
   border (dark ink on light paper is inverted), the paper level subtracted and contrast stretched;
2. crop to the ink, scale the longest side to 80 px (4x the final 20 px box);
3. stroke weight: measured as 2*area/boundary of the binarised ink and dilated or eroded towards MNIST's
   (about 7.4 px at this scale, i.e. ~2 px in 28x28), so a thin brush and a fat finger look alike;
4. downsample to a 20 px box (area averaging = anti-aliasing) and centre by centre of mass in 28x28;
5. normalise with the model's own mean/std.
"""
from __future__ import annotations

import io
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.models import InputSpec

MAX_PIXELS = 40_000_000        # larger images are refused before they are decoded (decompression bombs)
SHRINK_PIXELS = 1 << 20        # larger images are box-reduced to about this size before any float copy
BOX = 20                       # MNIST's glyph box inside the 28x28 frame
WORK = 4 * BOX                 # working resolution for stroke-weight adjustment
MNIST_STROKE = 7.4             # median 2*area/boundary of MNIST test digits at the working resolution
INK_THRESHOLD = 0.2            # ink below this (after normalisation) is paper noise or JPEG ringing

Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # PIL itself refuses anything over 2x this


class PreprocessError(ValueError):
    """The input cannot be turned into a model input; the message says what the user should do."""


class EmptyInputError(PreprocessError):
    pass


# ----------------------------------------------------------------------------------------------------
# Step 1: anything -> ink map (float32 HxW in [0, 1], 1 = ink)


def open_image(source) -> Image.Image:
    """Open a path, bytes or file object as a PIL image, refusing oversized or broken files clearly."""
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    except UnidentifiedImageError as e:
        raise PreprocessError("that file is not an image PIL can read; upload a PNG, JPEG, GIF, BMP or WebP") from e
    except Image.DecompressionBombError as e:
        raise PreprocessError(f"the image is too large (over {MAX_PIXELS / 1e6:.0f} megapixels); scale it down") from e
    except (FileNotFoundError, IsADirectoryError) as e:
        raise PreprocessError(f"no image file at {source}") from e
    check_size(img)
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
        raise PreprocessError(f"the image file is damaged or truncated ({e}); try saving it again") from e
    return img


def check_size(img: Image.Image) -> None:
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise PreprocessError(f"the image is {w}x{h} = {w * h / 1e6:.0f} megapixels; the limit is "
                              f"{MAX_PIXELS / 1e6:.0f} megapixels, scale it down first")
    if w < 1 or h < 1:
        raise PreprocessError("the image is empty (zero pixels)")


def _shrink(img: Image.Image) -> Image.Image:
    """Box-reduce an image of more than SHRINK_PIXELS by an integer factor. A 12 MP phone photo then costs
    ~0.1 s and tens of MB instead of seconds and a gigabyte of float copies, and the digit, which ends up
    20 px tall, loses nothing: strokes wider than the factor keep their full strength. The factor follows
    the area, not the longest side, so a 3000x20 strip keeps its 20 rows."""
    factor = math.ceil(math.sqrt(img.size[0] * img.size[1] / SHRINK_PIXELS))
    if factor <= 1:
        return img
    if img.mode in ("1", "P", "PA"):  # modes reduce() does not take
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "L")
    elif img.mode.startswith("I;16"):
        img = img.convert("I")
    return img.reduce(factor)


def _to_gray_alpha(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Grayscale in [0, 1] and the alpha channel (or None), whatever the mode (16-bit, palette, CMYK...)."""
    img = _shrink(ImageOps.exif_transpose(img))  # photos taken sideways; huge photos
    alpha = None
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a), None
    if img.mode == "P" and "transparency" in img.info or img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba, dtype=np.float32)[..., 3] / 255.0
        img = rgba
    gray = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    return gray, alpha


def _from_array(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    a = np.asarray(a)
    if a.dtype == np.uint8 and a.ndim >= 2 and a.shape[0] * a.shape[1] > SHRINK_PIXELS and (
            a.ndim == 2 or a.ndim == 3 and a.shape[2] in (1, 2, 3, 4)):  # e.g. a huge sketch layer
        a = np.asarray(_shrink(Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a)))
    if a.dtype.kind == "f":
        a = a.astype(np.float32)
        if a.max(initial=0) > 1.0:
            a = a / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    else:
        a = a.astype(np.float32) / 255.0
    if a.ndim == 2:
        return a, None
    if a.ndim == 3 and a.shape[2] in (1, 2, 3, 4):
        color, alpha = (a[..., :-1], a[..., -1]) if a.shape[2] in (2, 4) else (a, None)
        gray = color @ np.array([0.299, 0.587, 0.114], np.float32) if color.shape[2] == 3 else color[..., 0]
        return gray, alpha
    raise PreprocessError(f"expected an image array of shape HxW, HxWx3 or HxWx4, got {a.shape}")


def _gray_alpha(value) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(value, Image.Image):
        check_size(value)
        return _to_gray_alpha(value)
    if isinstance(value, np.ndarray):
        return _from_array(value)
    if isinstance(value, torch.Tensor):
        return _from_array(value.detach().cpu().numpy())
    if isinstance(value, (str, os.PathLike, bytes, bytearray)):
        return _to_gray_alpha(open_image(value))
    if isinstance(value, dict) and "path" in value:  # a gradio FileData-like dict
        return _to_gray_alpha(open_image(value["path"]))
    raise PreprocessError(f"unsupported image input of type {type(value).__name__}")


def _ink_from_gray(gray: np.ndarray) -> np.ndarray:
    """Decide polarity from the border, subtract the paper level, stretch the contrast."""
    h, w = gray.shape
    b = max(1, min(h, w) // 20)
    border = np.concatenate([gray[:b].ravel(), gray[-b:].ravel(), gray[:, :b].ravel(), gray[:, -b:].ravel()])
    paper = float(np.median(border))
    if paper > 0.5:  # light paper, dark ink
        gray, paper = 1.0 - gray, 1.0 - paper
    ink = np.clip(gray - paper, 0, None)
    top = float(np.percentile(ink[ink > 0], 99)) if (ink > 0).any() else 0.0
    if top < 0.08:  # nothing stands out from the paper: a blank or single-colour image
        return np.zeros_like(ink)
    return np.clip(ink / top, 0, 1)


def ink_map(value) -> np.ndarray:
    """Any supported input -> float32 ink map in [0, 1]."""
    if isinstance(value, dict) and ("layers" in value or "composite" in value):
        # Gradio sketchpad: strokes live in the layers' alpha; background/composite are only a fallback
        # (an image placed on the canvas, or a client that sends only the composite).
        inks = []
        for layer in value.get("layers") or []:
            if layer is None:
                continue
            gray, alpha = _gray_alpha(layer)
            if alpha is not None and alpha.max(initial=0) > 0:
                inks.append(alpha)
        if inks:
            ink = inks[0]
            for a in inks[1:]:
                ink = np.maximum(ink, a) if a.shape == ink.shape else ink
            return ink.astype(np.float32)
        for key in ("composite", "background"):
            if value.get(key) is not None:
                return ink_map(value[key])
        raise EmptyInputError("draw something first: the canvas is empty")
    gray, alpha = _gray_alpha(value)
    if alpha is not None and alpha.min() < 0.98 and alpha.max() > 0.02:
        # Transparent background: ink is what is opaque and differs from the page. For a drawing on a
        # transparent canvas that is simply the alpha, whatever colour the pen had.
        return alpha.astype(np.float32)
    return _ink_from_gray(gray)


# ----------------------------------------------------------------------------------------------------
# Steps 2-4: ink map -> MNIST-like 28x28


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize float array to (w, h); area averaging when shrinking (anti-aliasing), bilinear when growing."""
    w, h = size
    shrinking = w < a.shape[1] or h < a.shape[0]
    img = Image.fromarray(a.astype(np.float32), mode="F")
    return np.asarray(img.resize((w, h), Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR),
                      dtype=np.float32)


def _bbox(ink: np.ndarray, thr: float = INK_THRESHOLD) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(ink > thr)
    if len(ys) == 0:
        return None
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


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
    b = torch.from_numpy(ink > 0.5).float()[None, None]
    if b.sum() == 0:
        return 0.0
    eroded = -F.max_pool2d(-F.pad(b, (1, 1, 1, 1)), 3, 1, 0)
    boundary = (b - eroded).clamp(min=0).sum()
    return float(2 * b.sum() / boundary.clamp(min=1))


def _morph(ink: np.ndarray, radius: int, dilate: bool) -> np.ndarray:
    t = torch.from_numpy(np.array(ink, dtype=np.float32))[None, None]
    t = F.pad(t, (radius,) * 4)
    k = 2 * radius + 1
    t = F.max_pool2d(t, k, 1, radius) if dilate else -F.max_pool2d(-t, k, 1, radius)
    return t[0, 0].numpy()


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


def preprocess(image, spec: InputSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Any user image -> (normalised float32 (1, 1, 28, 28), uint8 (28, 28) preview of what the model sees)."""
    spec = spec or InputSpec()
    if image is None:
        raise EmptyInputError("draw something first (or upload an image)")
    if spec.layout == "object":
        frame = to_object_frame(ink_map(image), size=spec.height)
    elif spec.layout == "digit":
        frame = to_mnist_frame(ink_map(image), size=spec.height, box=round(spec.height * BOX / 28))
    else:
        raise ValueError(f"unknown input layout {spec.layout!r}; expected 'digit' or 'object'")
    x = ((frame - spec.mean) / spec.std).astype(np.float32)[None, None]
    return x, (frame * 255).round().astype(np.uint8)
