"""Ink step: decoded planes -> ink map (float32 HxW in [0, 1], 1 = ink), before any clean-up, and the binary
mask of what stands out as ink.

    from engine.preprocess.ink import raw_ink
    ink, scale, kind, outside = raw_ink(value)   # kind: "sketch" (layer alpha) or "image"

For photos and scans the light is normalised locally first: the paper's brightness around each point is
estimated (a morphological closing of the darkest-channel plane, on a small copy, with a kernel wider than
any stroke: the strokes vanish and the paper, its shadow and gradient remain) and each pixel's contrast is
measured against it (divided: a stroke in a shadow keeps its contrast). The same with an opening finds light
ink on a dark ground; the polarity is the one with more ink over its thresholds, so a dark table along an
edge (wide, followed by the light estimate) does not decide it; light ink must be lighter than most of the
image (its ground), or the dark polarity is taken (the paper in a bold 8's loops is no light ink). The ink
is then what exceeds a threshold set from the image's own noise and its strongest ink, a local threshold in
effect since the contrast is already local. A page lying whole on a desk that fills most of the picture (a
sticky note) is found before all that: its writing is dark ink on it, its noise the page's, not the desk's.
"""
from __future__ import annotations

import cv2
import numpy as np

from engine.preprocess.decode import Decoded, EmptyInputError, decode
from engine.preprocess.frame import INK_THRESHOLD

ANALYSIS = 160          # the light is estimated on a copy this many pixels on its longest side
PAPER_KERNEL = 0.25     # ... with a kernel this fraction of its shorter side (wider than any digit's stroke)
MIN_CONTRAST = 0.03     # the faintest ink told from paper, as a fraction of the paper's local brightness
NOISE_SIGMAS = 4        # ... and at least this many times the paper's own noise (hysteresis: seeds 1.5x, at most
                        # halfway to full contrast)
PEAK_FRACTION = 0.3     # seeds are at least this fraction of the image's strongest ink
UNIFORM = 0.1           # paper spreading less than this share of the ink's contrast (std) is one level
GRID = 4                # ... with its level in each cell of a GRID x GRID grid within MIN_CONTRAST of the whole's
EDGE_INK = 0.1          # ... unless more than this share of the image's edge is not paper (a table)
PAPER_STEP = 0.25       # the polarity is judged where the paper's brightness changes by less than this nearby
PAPER_NEAR = 3          # ... and near a step in it, against a median this many times narrower
CROP_IMAGE = 600        # a digit cropped to its ink: under this many pixels on its longer side, the image's own
                        # (a photo of a page is larger, though a 12 MP one is decoded at 500x375),
CROP_CONTRAST = 0.3     # ... its ink this much darker (lighter) than its paper,
CROP_SPREAD = 0.2       # ... the paper spreading less than this share of that (a scan's, not a photo's light),
CROP_EDGE = 0.25        # ... (its strokes with their rims: off the paper by this share of the ink's step),
CROP_PIECE = 0.02       # ... and cut by a stroke into two pieces this big (of the image) or more at its edge;
CROP_MARGIN = 0.2       # ... it gets a margin of its paper this share of its longer side (MNIST's: 4 px of 20)
LIGHT_GROUND = 0.2      # light ink (its firm part) is lighter than the image's median, its ground, by this
PAGE_IMAGE = 200        # a page lying whole on a desk (a sticky note) is looked for in images this large or larger:
PAGE_SIZE = 0.2         # ... it is this share of the image's shorter side across at least, its outline fills
PAGE_SHAPE = 0.85       # ... this share of its smallest enclosing rectangle and lies within
PAGE_HUG = 0.03         # ... this share of the rectangle's width of its sides
PAGE_ALONG = 0.9        # ... along this share of its length, the rectangle no longer than
PAGE_ASPECT = 2.5       # ... this times its width, and no more than
PAGE_FRAME = 0.25       # ... this share of its outline lies on the image's edge, it is lighter than the desk
PAGE_STEP = 0.08        # ... around it by this (of full scale) at least; its writing is looked for
PAGE_INSET = 0.03       # ... this share of its width inside its edge
PAGE_TRIES = 4          # ... (the page is looked for above Otsu's threshold and this many - 1 higher ones)
STAND_OUT = 0.4         # the paper just around writing is at most this share of its strongest ink's contrast


def is_sketch(value) -> bool:
    return isinstance(value, dict) and ("layers" in value or "composite" in value)


def _odd(n: float) -> int:
    return max(3, int(n) // 2 * 2 + 1)


def _small(plane: np.ndarray) -> np.ndarray:
    """The copy the paper's light is judged on: area-averaged to ANALYSIS pixels on its longest side."""
    h, w = plane.shape
    f = min(1.0, ANALYSIS / max(h, w))
    return cv2.resize(plane, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def background(plane: np.ndarray, dark: bool, small: np.ndarray | None = None) -> np.ndarray:
    """The paper's local brightness: a closing (dark ink) or opening (light ink) wider than any stroke,
    made on a small copy (small: _small(plane), when the caller has it), smoothed and brought back to full
    size."""
    h, w = plane.shape
    f = min(1.0, ANALYSIS / max(h, w))
    k = _odd(PAPER_KERNEL * min(h, w) * f)
    small = _small(plane) if small is None else small
    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    bg = cv2.morphologyEx(small, cv2.MORPH_CLOSE if dark else cv2.MORPH_OPEN, ellipse,
                          borderType=cv2.BORDER_REPLICATE)
    bg = cv2.blur(bg, (_odd(k / 2),) * 2)
    return cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)


def _paper(plane: np.ndarray, edge: bool = False) -> tuple[np.ndarray, bool]:
    """Otsu's two classes of a plane in [0, 1] -> (bool: the paper; whether it is the lighter). The paper is
    the larger class, or with edge=True the one that holds most of the image's edge (a digit cropped to its
    ink: a bold one may cover more than half the image, but touches each edge only where it reaches out)."""
    u8 = (np.clip(plane, 0, 1) * 255).round().astype(np.uint8)
    _, light = cv2.threshold(u8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    on = np.concatenate([light[0], light[-1], light[:, 0], light[:, -1]]) if edge else light
    light_paper = bool(on.mean() >= 0.5)
    return (light.view(bool) if light_paper else ~light.view(bool)), light_paper


def uniform_paper(plane: np.ndarray, small: np.ndarray | None = None) -> tuple[float, float] | None:
    """(the paper's brightness, the ink's) when the paper is one level over the whole image (a scan, a
    screenshot, a crop like MNIST's own 28x28), else None. Otsu splits the pixels in two; the paper is the
    larger class, and it is uniform when it spreads little. Then one level is exact and a local estimate
    could only err: in a small image, a bold digit's merged strokes are wider than any kernel the image
    allows. Uniform means: the paper's spread (std) is under UNIFORM of the ink's contrast, so faint pencil
    under a mild gradient still gets the local estimate; and its level in each cell of a GRID x GRID grid is
    within MIN_CONTRAST of the whole's, so a gentle gradient, under that spread but over the faintest ink,
    does not leave the paper's darker side as a haze of ink (around a number written near a shadowed edge).
    small: _small(plane), when the caller has it."""
    small = _small(plane) if small is None else small
    on_paper, light_paper = _paper(small)  # light paper: dark ink, whose contrast is the paper's light divided
    paper, ink = small[on_paper], small[~on_paper]
    if paper.size < 0.6 * small.size or ink.size == 0:
        return None
    # Ink seldom reaches the image's edge; a table beside the page always does: not one paper level then.
    edge = np.concatenate([on_paper[0], on_paper[-1], on_paper[:, 0], on_paper[:, -1]])
    if (~edge).mean() > EDGE_INK:
        return None
    level = float(np.median(paper))
    if float(paper.std()) > UNIFORM * abs(level - float(np.median(ink))):
        return None
    cells = []
    for rows in np.array_split(np.arange(small.shape[0]), GRID):
        for cols in np.array_split(np.arange(small.shape[1]), GRID):
            if not (len(rows) and len(cols)):  # a strip a few pixels high: fewer cells
                continue
            cell = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            if on_paper[cell].mean() >= 0.25:
                cells.append(float(np.median(small[cell][on_paper[cell]])))
    if ((level - min(cells)) / max(level, 1e-3) if light_paper else max(cells) - level) > MIN_CONTRAST:
        return None
    return level, float(np.median(ink))


def cropped_to_ink(gray: np.ndarray, scale: float = 1.0) -> bool:
    """Is the image a digit cropped to its ink (a crop of a scan, a tightly cut drawing)? It is small
    (CROP_IMAGE, in the image's own pixels: scale is its pixels per pixel of gray), and on the small copy the
    ink (the Otsu class that holds less of the image's edge: a bold digit may be more ink than paper) stands out
    (CROP_CONTRAST) from an even paper (CROP_SPREAD), and one stroke with its faint rim (off the paper's level
    by CROP_EDGE of the ink's step: where the cut was made; or a pixel short of that) reaches from one of the
    image's edges to the opposite one, spans half its width and half its height at least (no ruled line, no
    speck of grain) and cuts the paper at the edge in two pieces or more (each CROP_PIECE of the image at
    least). With no paper around it, such strokes are as dark, as sharp and (in so small an image) as wide as a
    table beside a page, and would be taken for one; a page beside a table, or a blank one, is in one piece."""
    if max(gray.shape) * scale >= CROP_IMAGE:
        return False
    small = _small(gray)
    paper, _ = _paper(small, edge=True)
    if paper.all() or not paper.any():  # one level: a blank image
        return False
    level = float(np.median(small[paper]))
    step = abs(level - float(np.median(small[~paper])))
    if step < CROP_CONTRAST or float(small[paper].std()) > CROP_SPREAD * step:
        return False
    paper = np.abs(small - level) < CROP_EDGE * step  # the strokes with their faint rims, which the cut touches
    # ... or passes a pixel away (the small copy's averaging and JPEG's ringing fade a stroke's last pixel)
    paper = ~cv2.dilate((~paper).view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
    h, w = paper.shape
    _, _, stats, _ = cv2.connectedComponentsWithStats((~paper).view(np.uint8), connectivity=8)
    x, y, sw, sh = (stats[1:, i] for i in range(4))
    across = ((y == 0) & (y + sh == h) | (x == 0) & (x + sw == w)) & (sw >= w / 2) & (sh >= h / 2)
    if not across.any():
        return False
    _, labels, stats, _ = cv2.connectedComponentsWithStats(paper.view(np.uint8), connectivity=4)
    at_edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return int((stats[at_edge[at_edge > 0], cv2.CC_STAT_AREA] >= CROP_PIECE * paper.size).sum()) >= 2


def with_margin(d: Decoded) -> Decoded:
    """The image with a margin of its paper around it (CROP_MARGIN; each plane's paper level: its median
    over the paper, _paper), so a digit cropped to its ink is read like one with room around it; and the
    ink's polarity, which the paper at the crop's edge tells (dark_ink, the judge of any other image, can take
    light ink bold enough to fill the crop for the paper)."""
    m = max(2, round(CROP_MARGIN * max(d.gray.shape)))
    paper, light_paper = _paper(d.gray, edge=True)
    def pad(a: np.ndarray) -> np.ndarray:
        return cv2.copyMakeBorder(a, m, m, m, m, cv2.BORDER_CONSTANT, value=float(np.median(a[paper])))
    return Decoded(pad(d.gray), pad(d.dark), pad(d.light), None, d.scale, light_paper, m)


def unpad(a: np.ndarray, d: Decoded | None) -> np.ndarray:
    """A map made on with_margin's planes, without the margin (the image's own pixels)."""
    m = 0 if d is None else d.margin
    return a[m:a.shape[0] - m, m:a.shape[1] - m] if m else a


def _contrast(plane: np.ndarray, dark: bool, uniform: bool = True) -> np.ndarray:
    """Each pixel's contrast against the paper: one level where the paper is uniform (uniform=False: never;
    a page on a plain desk, whose level that would be), else its local light (smoothed a little against
    sensor noise and graphite grain, unless the image is so small that a 3x3 blur would be a good part of a
    stroke: MNIST's own 28x28)."""
    if min(plane.shape) >= 4 * 28:
        plane = cv2.GaussianBlur(plane, (3, 3), 0)
    small = _small(plane)
    levels = uniform_paper(plane, small) if uniform else None
    bg = background(plane, dark, small) if levels is None else np.float32(levels[0])
    if dark:  # divided: a stroke in a shadow keeps its contrast
        c = plane / np.maximum(bg, 1e-3)
        np.subtract(1, c, out=c)
    else:
        c = plane - bg
    return np.clip(c, 0, 1, out=c)


def _noise(c: np.ndarray, below: bool = False, within: np.ndarray | None = None) -> tuple[float, float]:
    """The paper's level and noise in a contrast map: median and robust sigma (from the median absolute
    deviation), on a subsample. below: the deviation measured below the median alone, where a dense pattern
    of lines (squared paper) adds none: over a third of the pixels may be such lines, and they would count
    as the paper's noise. within: bool map of the paper (a page on a desk), else all of it."""
    s = c[::3, ::3] if within is None else c[::3, ::3][within[::3, ::3]]
    med = float(np.median(s))
    return med, 1.4826 * float(np.median(med - s[s <= med] if below else np.abs(s - med)))


def _hysteresis(c: np.ndarray, low: float, high: float) -> np.ndarray:
    """uint8 mask: the connected regions over `low` that reach `high` somewhere (a faint stroke hangs on to
    its firm parts; paper noise over `low` has none)."""
    n, labels = cv2.connectedComponents((c > low).astype(np.uint8), connectivity=8)
    seeded = np.zeros(n, np.uint8)
    seeded[labels[c > high]] = 1
    seeded[0] = 0
    return seeded[labels]


def _ink(c: np.ndarray, below: bool = False, within: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Contrast -> (ink map, its sum); below: see _noise; within: the page, where alone there is ink."""
    if within is not None:
        c = c * within
    med, sigma = _noise(c, below, within)
    low = max(MIN_CONTRAST, med + NOISE_SIGMAS * sigma)
    over = c[c > low]
    if over.size == 0:
        return np.zeros_like(c), 0.0
    peak = float(np.percentile(over, 99))
    # Seeds stand well over the threshold, but no higher than halfway from it to full contrast: on a coarsely
    # mottled desk the threshold is over half of it, and 1.5 times that lay above all the writing.
    high = max(min(1.5 * low, (1 + low) / 2), PEAK_FRACTION * peak)
    if peak <= high:
        return np.zeros_like(c), 0.0
    mask = _hysteresis(c, low, high)
    # A faint halo stays faint. Not clipped at 1 yet: where ruled lines make most of the ink, the peak is
    # theirs, and the clean-up tells the writing from them by the writing's darker ink (extract_ink clips).
    ink = c - low
    ink /= max(peak - low, 1e-3)
    np.maximum(ink, 0, out=ink)
    ink *= mask
    return ink, float(ink.sum())


def dark_ink(d: Decoded, small: np.ndarray | None = None) -> bool:
    """True for dark ink on light paper (the common case, and the answer for a blank image), False for light
    ink on a dark ground. The paper is the commonest brightness around each point: a median filter wider than
    any stroke follows the paper through shadows, gradients and a table along an edge, where the border's
    brightness or one global level would not. Ink is what differs from it; its sign gives the polarity. (A
    morphological paper estimate is no judge here: an opening, the light-ink estimate, dips between dense
    dark strokes, so the paper inside a 0 or between two strokes would look like light ink.) small:
    _small(d.gray), when the caller has it."""
    small = _small(d.gray) if small is None else small
    levels = uniform_paper(d.gray, small)
    if levels is not None:  # one paper level over the whole image: the paper is its larger class
        return levels[0] >= levels[1]
    u8 = (small * 255).round().astype(np.uint8)
    k = min(_odd(PAPER_KERNEL * min(small.shape)), 255)
    paper = cv2.medianBlur(u8, k).astype(np.float32)
    # Near a step in the paper's light (the page's edge in a photo, a table beyond it) the wide median lags
    # behind the step by half its kernel, and a strip of the page would look like light ink, or the table
    # like dark ink; a digit written near the page's edge lies in that strip. There a median a third as
    # wide, still wider than a small digit's strokes, stands for the paper: it lags a third as far.
    k2 = _odd(k / PAPER_NEAR)
    square = np.ones((k, k), np.uint8)
    stepped = (cv2.dilate(paper, square) - cv2.erode(paper, square)) > 255 * PAPER_STEP
    if stepped.any():
        paper = np.where(stepped, cv2.medianBlur(u8, k2).astype(np.float32), paper)
    diff = u8.astype(np.float32) - paper
    s = diff[::2, ::2] if diff.size > 4096 else diff
    noise = 1.4826 * float(np.median(np.abs(s - np.median(s))))
    off = np.abs(diff) > max(255 * MIN_CONTRAST, NOISE_SIGMAS * noise)
    # Only where that estimate is smooth: what is left of its lag right at a step is no ink either. A digit
    # filling the picture makes steps of its own: where nothing is left, judge everywhere.
    square = np.ones((k2, k2), np.uint8)
    smooth = off & ((cv2.dilate(paper, square) - cv2.erode(paper, square)) <= 255 * PAPER_STEP)
    if smooth.sum() >= max(10, off.sum() / 20):
        off = smooth
    # More darker-than-paper ink than lighter, each pixel weighed by how far it is off: a stroke is far off
    # the paper, the median's lag behind the light's gradient across a photo only a little, if widely.
    d = diff[off]
    return float((d * np.abs(d)).sum()) <= 0


def ink_from_planes(d: Decoded) -> np.ndarray:
    """Opaque image -> ink map. The polarity first (dark_ink: from the image normalised by its local paper,
    not from the border), then each pixel's contrast against the paper's local light (dark ink on the
    darkest channel against a closing, light ink on the brightest against an opening); the ink is what rises
    over a threshold from the paper's noise and the strongest ink (hysteresis: faint parts of a stroke hang
    on to its firm parts), rescaled so firm ink is 1 (faint pencil and black ballpoint look alike to the
    model)."""
    if not d.margin:
        small = _small(d.gray)  # (the page and the polarity are judged on the same small copy)
        page = page_on_desk(d.gray, small)
        if page is not None:  # a sticky note on a desk: dark writing on the page, none off it
            d.dark_ink, d.contrast = True, _contrast(d.dark, True, uniform=False)
            return _ink(d.contrast, within=page)[0]
    dark = d.dark_ink if d.margin else dark_ink(d, small)  # a crop's paper, the class at its edge, gives its polarity
    contrast = {}
    # When the first polarity finds nothing (a bold digit filling a tiny image), the other; when neither
    # does, both again with the paper's noise measured below its level (_noise): squared paper's lines.
    for below, polarity in ((False, dark), (False, not dark), (True, dark), (True, not dark)):
        if polarity not in contrast:
            contrast[polarity] = _contrast(d.dark, True) if polarity else _contrast(d.light, False)
        ink, total = _ink(contrast[polarity], below)
        if total > 0 and (polarity or _on_dark_ground(ink, d.gray)):
            d.dark_ink, d.contrast = polarity, contrast[polarity]
            return ink
    return np.zeros_like(d.gray)


def stands_out(writing: np.ndarray, contrast: np.ndarray) -> bool:
    """Does the writing (its ink map) stand out from the paper just around it (contrast: the map the ink was
    thresholded from)? A stroke is a step: its strongest ink (90th percentile) is dozens of times the
    paper's contrast beside it (median 52 in 2000 faint pencil photos). Of 9980 digits in seven kinds of
    upload 2 came under 1 / STAND_OUT = 2.5 times: a 9 mostly lost in a shadow (read wrong either way) and a
    speck taken for a photo's writing (its line, the digit itself, stands out). On a blank page under uneven
    light the ink threshold is set from the paper's own noise, and what crosses it is a patch of grain or
    the dark end of a gradient, 1.5 to 2.1 times the paper around it (11 of 13 pencil pages that answered a
    digit). The paper around: the median of a ring a stroke's width (twice its ink's deepest point) and 2
    pixels beyond the writing."""
    on = (writing > 0).astype(np.uint8)
    box = cv2.boundingRect(on)
    if box[2] == 0:
        return True
    x, y, w, h = box
    depth = cv2.distanceTransform(np.pad(on[y:y + h, x:x + w], 1), cv2.DIST_L2, 3)  # paper all round it
    r = round(max(2.0, 2 * float(depth.max()))) + 2
    x0, y0 = max(0, x - r), max(0, y - r)
    x1, y1 = min(on.shape[1], x + w + r), min(on.shape[0], y + h + r)
    inside = on[y0:y1, x0:x1]
    ring = cv2.dilate(inside, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)) > inside
    if not ring.any():  # the writing fills the image
        return True
    c = contrast[y0:y1, x0:x1]
    return float(np.median(c[ring])) <= STAND_OUT * float(np.percentile(c[inside > 0], 90))


def _on_dark_ground(ink: np.ndarray, gray: np.ndarray) -> bool:
    """Light ink is lighter than its ground, most of the image, by LIGHT_GROUND at least. Light "ink" that is
    not is the paper's own light: the edges of a blank page on a dark table (all that stands out there), the
    paper inside a bold dark 8's loops (the polarity judged wrong)."""
    firm = ink > INK_THRESHOLD
    return bool(firm.any()) and float(np.median(gray[firm]) - np.median(gray[::2, ::2])) >= LIGHT_GROUND


def page_on_desk(gray: np.ndarray, small: np.ndarray | None = None) -> np.ndarray | None:
    """bool HxW: a page lying whole on a desk that fills most of the picture (a sticky note, a card), inside
    its edge; None for any other picture. The page is what is lighter than Otsu's threshold on the small
    copy (when that is under half the image), or than one of a few higher ones, a rectangle (page_outline),
    clear of the image's edge along most of its outline (PAGE_FRAME: the lit part of a page in a shadow, a
    rectangle too, runs on to the edge) and lighter than the desk around it (_stands_above). small:
    _small(gray), when the caller has it."""
    h, w = gray.shape
    if max(h, w) < PAGE_IMAGE:
        return None
    small = ((_small(gray) if small is None else small) * 255).round().astype(np.uint8)
    otsu, light = cv2.threshold(small, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if light.mean() > 0.5:  # the paper fills most of the picture: the common case
        return None
    # Otsu's threshold, then higher ones: the lighter mottle of a mid-grey desk may reach the page's light
    # and join it at Otsu's, but seldom all of it
    top = float(np.percentile(small, 99))
    for t in otsu + (top - otsu) * np.arange(PAGE_TRIES) / PAGE_TRIES:
        light = (small > t).astype(np.uint8)
        outline = page_outline(light)
        if outline is None:
            continue
        x, y = outline[:, 0, 0], outline[:, 0, 1]
        if np.mean((x == 0) | (y == 0) | (x == small.shape[1] - 1) | (y == small.shape[0] - 1)) > PAGE_FRAME:
            continue
        page = cv2.drawContours(np.zeros_like(light), [outline], 0, 1, -1)  # the writing's holes filled
        if _stands_above(page, small):
            break
    else:
        return None
    inset = _odd(2 * PAGE_INSET * min(cv2.minAreaRect(outline)[1]))
    page = cv2.erode(page, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (inset, inset)))
    return cv2.resize(page, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def _stands_above(page: np.ndarray, small: np.ndarray) -> bool:
    """Is the page (uint8 mask of the small uint8 copy) lighter by PAGE_STEP than the desk just around it (a
    ring a few pixels out, past its blurred edge)? The lit cells of squared paper, a rectangle too above a
    high threshold, are not: around them lies the same paper."""
    near, far = (cv2.dilate(page, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) for k in (5, 13))
    ring = far > near
    return bool(ring.any()) and float(np.median(small[page > 0]) - np.median(small[ring])) >= 255 * PAGE_STEP


def page_outline(mask: np.ndarray) -> np.ndarray | None:
    """The outline of the mask's largest component when that is a page seen a little askew, not a digit; else
    None. The outline (holes, the writing on it, ignored) is a rectangle's: it fills PAGE_SHAPE of its
    smallest enclosing rectangle (a bold 0's ellipse fills pi/4 of it) and runs along that rectangle's sides
    (within PAGE_HUG of its width, along PAGE_ALONG of its length: a bold 8 whose loops closed up is a blob
    that fills its rectangle well, but touches it only here and there), which is no bar (a bold 1's is); and
    it is a good part of the image (PAGE_SIZE: too few pixels tell no outline)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        return None
    big = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    outline = max(cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0], key=cv2.contourArea)
    rect = cv2.minAreaRect(outline)
    w, h = sorted(rect[1])
    if w < PAGE_SIZE * min(mask.shape) or h > PAGE_ASPECT * w or cv2.contourArea(outline) < PAGE_SHAPE * w * h:
        return None
    corners = cv2.boxPoints(rect)
    off = [abs(cv2.pointPolygonTest(corners, (float(x), float(y)), True)) for x, y in outline[::4, 0]]
    return outline if float(np.mean(np.array(off) <= max(1.0, PAGE_HUG * w))) >= PAGE_ALONG else None


def global_ink(gray: np.ndarray) -> np.ndarray:
    """Whole objects rather than strokes (Fashion-MNIST's garments): polarity from the border, one paper
    level subtracted, contrast stretched. A local paper estimate would eat a garment wider than its kernel."""
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


def raw_ink(value, strokes: bool = True) -> tuple[np.ndarray, float, str, Decoded | None]:
    """Any supported input -> (ink map, original pixels per ink-map pixel, "sketch" or "image", the decoded
    planes of an opaque image or None). strokes=False: an opaque image's ink by global_ink (objects). An
    opaque image's ink may exceed 1 where it is firmer than most of the image's ink (see _ink). A digit
    cropped to its ink is read with a margin of its paper around it: the map and the planes then have it
    too (Decoded.margin; unpad takes it off)."""
    if is_sketch(value):
        # Gradio sketchpad: strokes live in the layers' alpha; background/composite are only a fallback
        # (an image placed on the canvas, or a client that sends only the composite).
        inks = []
        for layer in value.get("layers") or []:
            if layer is None:
                continue
            d = decode(layer, alpha_only=True)
            if d.alpha is not None and d.alpha.max(initial=0) > 0:
                inks.append((d.alpha, d.scale))
        if inks:
            ink, scale = inks[0]
            for a, _ in inks[1:]:
                ink = np.maximum(ink, a) if a.shape == ink.shape else ink
            return ink.astype(np.float32), scale, "sketch", None
        for key in ("composite", "background"):
            if value.get(key) is not None:
                ink, scale, _, d = raw_ink(value[key], strokes)
                return ink, scale, "sketch", d
        raise EmptyInputError("draw something first: the canvas is empty")
    d = decode(value)
    if d.alpha is not None and d.alpha.min() < 0.98 and d.alpha.max() > 0.02:
        # Transparent background: ink is what is opaque and differs from the page. For a drawing on a
        # transparent canvas that is simply the alpha, whatever colour the pen had.
        return d.alpha.astype(np.float32), d.scale, "image", None
    if not strokes:
        return global_ink(d.gray).astype(np.float32), d.scale, "image", d
    if cropped_to_ink(d.gray, d.scale):
        d = with_margin(d)
    return ink_from_planes(d).astype(np.float32), d.scale, "image", d


def ink_map(value) -> np.ndarray:
    """Any supported input -> float32 ink map in [0, 1] (before clean-up)."""
    ink, _, _, d = raw_ink(value)
    return np.minimum(unpad(ink, d), 1)
