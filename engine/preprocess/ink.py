"""Ink step: decoded gray/alpha -> ink map (float32 HxW in [0, 1], 1 = ink), before any clean-up.

    from engine.preprocess.ink import raw_ink
    ink, scale, kind = raw_ink(value)   # kind: "sketch" (layer alpha) or "image"
"""
from __future__ import annotations

import numpy as np

from engine.preprocess.decode import EmptyInputError, decode


def is_sketch(value) -> bool:
    return isinstance(value, dict) and ("layers" in value or "composite" in value)


def ink_from_gray(gray: np.ndarray) -> np.ndarray:
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


def raw_ink(value) -> tuple[np.ndarray, float, str]:
    """Any supported input -> (ink map, original pixels per ink-map pixel, "sketch" or "image")."""
    if is_sketch(value):
        # Gradio sketchpad: strokes live in the layers' alpha; background/composite are only a fallback
        # (an image placed on the canvas, or a client that sends only the composite).
        inks = []
        for layer in value.get("layers") or []:
            if layer is None:
                continue
            _, alpha, scale = decode(layer)
            if alpha is not None and alpha.max(initial=0) > 0:
                inks.append((alpha, scale))
        if inks:
            ink, scale = inks[0]
            for a, _ in inks[1:]:
                ink = np.maximum(ink, a) if a.shape == ink.shape else ink
            return ink.astype(np.float32), scale, "sketch"
        for key in ("composite", "background"):
            if value.get(key) is not None:
                ink, scale, _ = raw_ink(value[key])
                return ink, scale, "sketch"
        raise EmptyInputError("draw something first: the canvas is empty")
    gray, alpha, scale = decode(value)
    if alpha is not None and alpha.min() < 0.98 and alpha.max() > 0.02:
        # Transparent background: ink is what is opaque and differs from the page. For a drawing on a
        # transparent canvas that is simply the alpha, whatever colour the pen had.
        return alpha.astype(np.float32), scale, "image"
    return ink_from_gray(gray), scale, "image"


def ink_map(value) -> np.ndarray:
    """Any supported input -> float32 ink map in [0, 1] (before clean-up)."""
    return raw_ink(value)[0]
