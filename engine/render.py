"""Re-render real 28x28 test digits the way people hand them to the app, to measure preprocessing.

    from engine.render import render
    value = render(digit_u8, "sketch", rng)   # a Gradio sketchpad value (dict of RGBA layers)
    img = render(digit_u8, "jpeg", rng)       # PIL image: dark ink on light paper, JPEG-compressed
    img = render(digit_u8, "inverted", rng)   # PIL image: light ink on dark, large, anywhere

Kinds: "sketch" (big transparent canvas, the digit's centre line drawn with a round brush of random
width, random place and size), "jpeg" (grey paper, dark ink, noise, JPEG), "inverted" (light on dark, PNG-like).
"""
from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

KINDS = ("sketch", "jpeg", "inverted")


def _upscale(digit_u8: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(digit_u8.astype(np.float32) / 255.0)[None, None]
    return F.interpolate(t, size=(size, size), mode="bicubic", align_corners=False)[0, 0].clamp(0, 1).numpy()


def skeleton(digit_u8: np.ndarray, scale: int = 4) -> np.ndarray:
    """Zhang-Suen thinning of the digit, upscaled `scale` times first: its one-pixel-wide centre line.

    Thinning at 28x28 eats the ends of bold strokes and the small holes of bold loops (a thick 3 loses its
    bars, a 6 its loop); at 4x the centre line keeps the shape a person would trace.
    """
    img = np.pad((_upscale(digit_u8, 28 * scale) > 0.5).astype(np.uint8), 1)
    changed = True
    while changed:
        changed = False
        for step in range(2):
            p = [np.roll(np.roll(img, -dy, 0), -dx, 1) for dy, dx in
                 ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))]  # P2..P9
            n = sum(p)
            transitions = sum(((p[i] == 0) & (p[(i + 1) % 8] == 1)) for i in range(8))
            if step == 0:
                cond = (p[0] * p[2] * p[4] == 0) & (p[2] * p[4] * p[6] == 0)
            else:
                cond = (p[0] * p[2] * p[6] == 0) & (p[0] * p[4] * p[6] == 0)
            remove = (img == 1) & (n >= 2) & (n <= 6) & (transitions == 1) & cond
            if remove.any():
                img[remove] = 0
                changed = True
    return img[1:-1, 1:-1]


def _brush_strokes(digit_u8: np.ndarray, size: int, brush_px: float) -> np.ndarray:
    """Draw the digit's centre line at `size` x `size` with a round brush, as a person would."""
    from PIL import ImageDraw

    sk = skeleton(digit_u8)
    n = sk.shape[0]
    s = size / n
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    r = brush_px / 2
    ys, xs = np.nonzero(sk)
    for y, x in zip(ys, xs):
        cx, cy = (x + 0.5) * s, (y + 0.5) * s
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):  # join to 8-neighbours, each pair once
            if 0 <= y + dy < n and 0 <= x + dx < n and sk[y + dy, x + dx]:
                draw.line([cx, cy, (x + dx + 0.5) * s, (y + dy + 0.5) * s], fill=255, width=max(1, round(brush_px)))
    return np.asarray(img, dtype=np.float32) / 255.0


def _place(glyph: np.ndarray, canvas_hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    H, W = canvas_hw
    h, w = glyph.shape
    y, x = rng.integers(0, H - h + 1), rng.integers(0, W - w + 1)
    out = np.zeros((H, W), np.float32)
    out[y:y + h, x:x + w] = glyph
    return out


def render(digit_u8: np.ndarray, kind: str, rng: np.random.Generator):
    if kind == "sketch":
        H, W = int(rng.integers(400, 801)), int(rng.integers(400, 801))
        size = int(rng.integers(int(0.35 * min(H, W)), int(0.95 * min(H, W)) + 1))
        glyph = _brush_strokes(digit_u8, size, brush_px=float(rng.uniform(4, 14)))
        alpha = (_place(glyph, (H, W), rng) * 255).astype(np.uint8)
        layer = np.zeros((H, W, 4), np.uint8)
        layer[..., 3] = alpha  # black brush on a transparent layer
        background = np.full((H, W, 4), 255, np.uint8)
        composite = background.copy()
        composite[alpha > 0, :3] = 0
        return {"background": background, "layers": [layer], "composite": composite}
    if kind == "jpeg":
        H, W = int(rng.integers(240, 641)), int(rng.integers(240, 641))
        size = int(rng.integers(int(0.4 * min(H, W)), int(0.95 * min(H, W)) + 1))
        ink = _place(_upscale(digit_u8, size), (H, W), rng)
        paper = rng.uniform(0.75, 0.97)
        pen = rng.uniform(0.0, 0.3)
        img = paper - ink * (paper - pen) + rng.normal(0, 0.02, (H, W))
        buf = io.BytesIO()
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).convert("RGB").save(
            buf, "JPEG", quality=int(rng.integers(60, 91)))
        return Image.open(io.BytesIO(buf.getvalue()))
    if kind == "inverted":
        H, W = int(rng.integers(100, 501)), int(rng.integers(100, 501))
        size = int(rng.integers(int(0.3 * min(H, W)), int(0.95 * min(H, W)) + 1))
        ink = _place(_upscale(digit_u8, size), (H, W), rng)
        return Image.fromarray((ink * 255).astype(np.uint8)).convert("RGB")
    raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
