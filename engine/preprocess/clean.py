"""Clean-up step: an ink map -> only the ink that belongs to the writing.

    from engine.preprocess.clean import clean
    ink = clean(ink, planes)   # planes: the Decoded image of a photo/scan, None for a sketch

1. outside_paper: in a photo the page may not fill the frame; the table (a wide dark area touching the
   image's edge, found on a small Otsu-thresholded copy: what survives an erosion wider than any stroke) and
   a band along its edge are not ink.
2. remove_lines: ruled and margin lines, long thin straight structures running across the page in any colour
   (the ink map already holds coloured lines as ink), found with long horizontal/vertical openings; where a
   stroke crosses a line the stroke is kept.
3. keep_writing: connected components; the largest is the writing's core and others join it when they are
   near it for their size (a 5's top bar, a 4 or 7 in two strokes, a broken stroke), so a stray tap or
   speck away from the digit is dropped.
"""
from __future__ import annotations

import cv2
import numpy as np

from engine.preprocess.decode import Decoded

ANALYSIS = 256           # the page is found on a copy this many pixels on its longest side
SOLID = 0.12             # a table is dark and wider than this fraction of the shorter side (no stroke is)
EDGE_BAND = 0.02         # and ink this close to it (fraction of the shorter side) is the paper's edge
LINE_LENGTH = 0.4        # a ruled line runs straight for at least this fraction of the image's width (height)
LINE_SLENDER = 12        # ... and is at least this many times longer than thick
JOIN = 0.06              # a component joins the writing within JOIN + JOIN_SIZE * sqrt(its share of the
JOIN_SIZE = 0.4          # core's ink) times the core's size; a tiny speck must almost touch it
SPECK = 0.0002           # components smaller than this fraction of the image (and of 4 px) are noise


def _binary(ink: np.ndarray) -> np.ndarray:
    return (ink > 0).astype(np.uint8)


def outside_paper(d: Decoded) -> np.ndarray | None:
    """bool HxW: the region outside the page (dark, solid, touching the image's edge), or None if none."""
    h, w = d.gray.shape
    f = min(1.0, ANALYSIS / max(h, w))
    small = cv2.resize(d.gray, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    u8 = (small * 255).astype(np.uint8)
    t, dark = cv2.threshold(u8, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    side = min(small.shape)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, int(SOLID * side)),) * 2)
    solid = cv2.morphologyEx(dark, cv2.MORPH_OPEN, k)  # dark areas wider than any stroke
    n, labels, stats, _ = cv2.connectedComponentsWithStats(solid, connectivity=4)
    sh, sw = solid.shape
    touching = [i for i in range(1, n) if stats[i, cv2.CC_STAT_LEFT] == 0 or stats[i, cv2.CC_STAT_TOP] == 0
                or stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH] == sw
                or stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT] == sh]
    if not touching:
        return None
    out = np.isin(labels, touching).astype(np.uint8)
    if out.mean() > 0.6:  # the dark ground itself (light ink on dark, a dark page): not a table
        return None
    band = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_odd(2 * EDGE_BAND * side),) * 2)
    out = cv2.dilate(out, band)
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def _odd(n: float) -> int:
    return max(3, int(n) // 2 * 2 + 1)


def _lines_one_way(mask: np.ndarray, horizontal: bool) -> tuple[np.ndarray, float]:
    """uint8 mask of the long thin straight lines running one way (rows if horizontal), and the thickest
    line's mean thickness."""
    m = mask if horizontal else mask.T
    h, w = m.shape
    length = int(LINE_LENGTH * w)
    if length < 20:
        return np.zeros_like(mask), 0.0
    # A line in a photo is rarely level: thicken it vertically first so a slight tilt stays one run.
    tol = max(1, round(0.004 * h))
    thick = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_RECT, (1, 2 * tol + 1)))
    runs = cv2.morphologyEx(thick, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (length, 1)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(runs & m, connectivity=8)
    cw, area = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_AREA]
    is_line = (cw >= length) & (area * LINE_SLENDER <= cw.astype(np.int64) ** 2)
    is_line[0] = False
    lines = is_line[labels].astype(np.uint8)
    thickness = float((area[is_line] / cw[is_line]).max()) if is_line.any() else 0.0
    return (lines if horizontal else lines.T), thickness


def remove_lines(ink: np.ndarray) -> np.ndarray:
    """The ink without ruled and margin lines, keeping the strokes that cross them."""
    mask = _binary(ink)
    out = ink
    for horizontal in (True, False):
        lines, thickness = _lines_one_way(mask, horizontal)
        if not thickness:
            continue
        keep = mask & (1 - lines)
        # Re-join a stroke cut where it crosses the line: a line pixel with ink on both sides across it.
        across = 2 * int(np.ceil(thickness)) + 3
        k = cv2.getStructuringElement(cv2.MORPH_RECT, (1, across) if horizontal else (across, 1))
        keep |= cv2.morphologyEx(keep, cv2.MORPH_CLOSE, k) & lines
        out = out * keep
        mask = keep
    return out


def keep_writing(ink: np.ndarray) -> np.ndarray:
    """The ink of the writing: the largest component and the components near it for their size."""
    mask = _binary(ink)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 2:
        return ink
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    floor = max(4.0, SPECK * mask.size)
    core = int(np.argmax(areas))
    boxes = stats[1:, :4].astype(np.float64)  # x, y, w, h
    size = max(boxes[core, 2], boxes[core, 3])
    kept = {core}
    x0, y0 = boxes[core, 0], boxes[core, 1]
    x1, y1 = x0 + boxes[core, 2], y0 + boxes[core, 3]
    grew = True
    while grew:  # grow the writing: a component near the kept ones joins, which may bring others in reach
        grew = False
        for i in range(len(areas)):
            if i in kept or areas[i] < floor:
                continue
            bx, by, bw, bh = boxes[i]
            gap = max(x0 - (bx + bw), bx - x1, y0 - (by + bh), by - y1, 0)
            if gap <= size * (JOIN + JOIN_SIZE * np.sqrt(areas[i] / areas[core])):
                kept.add(i)
                x0, y0, x1, y1 = min(x0, bx), min(y0, by), max(x1, bx + bw), max(y1, by + bh)
                grew = True
    lut = np.zeros(n, np.float32)
    lut[[i + 1 for i in kept]] = 1
    return ink * lut[labels]


def clean(ink: np.ndarray, planes: Decoded | None) -> np.ndarray:
    """Ink map -> the ink of the writing alone (see the module's docstring)."""
    if planes is not None:
        outside = outside_paper(planes)
        if outside is not None:
            ink = ink * ~outside
        ink = remove_lines(ink)
    return keep_writing(ink)
