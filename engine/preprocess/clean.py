"""Clean-up step: an ink map -> only the ink that belongs to the writing.

    from engine.preprocess.clean import off_page, writing
    page = off_page(ink, gray)                 # gray: the luma of an opaque image (photo, scan); None for a
    ink = writing(page, gray is not None)      # sketch's alpha. line=True: the next digits of a number too

1. outside_paper: in a photo the page may not fill the frame; the table (a wide dark area touching the
   image's edge, found on a small Otsu-thresholded copy: what survives an opening wider than any stroke; its
   darker part where page in a shadow joined it, its edge with that page soft; and what lies beyond the
   page's straight, sharp edges: a light or mottled desk, not found as dark; or beyond straight edges past
   which the image varies in every direction and before which it does not: a desk's grain or mottle as light
   as the page) and a band along its edge are
   not ink, nor is what lies nearly all a little further in (the page's outline).
2. remove_lines: ruled and margin lines, long thin straight structures running across the page in any
   colour (the ink map holds coloured lines as ink: it is made from the darkest channel), found by a Hough
   transform, nearly level or plumb (a shorter piece too when several run parallel to it: a faint line
   broken into dashes; on squared paper the level and the plumb lines apart; in an evenly spaced family, the
   lines it misses where the spacing puts one, too faint to be found alone), and a form's printed boxes
   (find_frames: a thin hollow component with straight walls around it, and across it in a row of boxes);
   where a stroke crosses a line or a wall the stroke is kept.
3. keep_writing: connected components (OpenCV); in a photo, what touches the image's edge broadly or spans
   it is the region outside the paper (a dark table: the local light estimate turns a strip of it into
   "ink") or the paper's edge, and is dropped. The largest remaining component is the writing's core and
   others join it when they are near it for their size (a 5's top bar, a 4 or 7 in two strokes, a broken
   stroke), so a stray tap or a speck away from the digit is dropped; a level stroke above the writing (a
   5's or 7's bar lifted off its body; in a photo not as flat as a ruled line's dash) joins from up to half
   the core's size away. Reading a number (line=True), the next digits on the writing's line join too: as
   tall as half the core at least, level with the writing, within 1.5 core heights of it (a stray tap is
   far smaller; engine.preprocess.segment splits the digits).
"""
from __future__ import annotations

import cv2
import numpy as np

from engine.preprocess.frame import INK_THRESHOLD

ANALYSIS = 256           # the page is found on a copy this many pixels on its longest side
TABLE_IMAGE = 200        # no table is looked for in an image smaller than this (a crop of a digit, not a photo)
SOLID = 0.12             # a table is dark and wider than this fraction of the shorter side (no stroke is)
SHARP = 0.3              # ... and its boundary is a step, not a soft shadow's edge (see outside_paper)
TABLE_STEP = 0.2         # ... and darker than the page by at least this (of full scale)
SOFT_SHARE = 0.2         # a dark region soft along more of its boundary than this holds some page in shadow
EDGE_LENGTH = 0.3        # a straight edge this long at least (of the shorter side) may be the page's,
EDGE_COVER = 0.6         # ... if along this share of its course across the image it is a sharp step,
EDGE_STEP = 0.04         # ... darker on one side by this much (of full scale),
EDGE_TRIES = 16          # ... (the most voted straight lines of the Hough transform that are looked at)
EDGE_DEPTH = (0.03, 0.08, 0.15)  # ... out to these distances beyond it (of the shorter side: past any stroke),
PAGE_LEFT = 0.5          # ... and leaves this share of the image to the page
TEXTURE = 0.004          # a desk as light as the page: what varies across every direction (_textured) this much,
DESK_ROUGH = 0.5         # ... beyond a page's edge along this share of it at each EDGE_DEPTH,
DESK_ALL = 0.8           # ... and over this share of all that lies beyond it (a band of print has paper past it),
PAGE_SMOOTH = 0.6        # ... while the page's side does not along this share (its writing is small against it),
DESK_PAGE = 0.3          # ... and such a desk leaves the page this share of the image at least,
DESK_INK = 0.25          # ... and holds no marks darker than the page's darkest by this (of full scale)
GROUND = 0.6             # dark regions over this share of the image are the ground (light ink on dark), no table
EDGE_BAND = 0.02         # and ink this close to it (fraction of the shorter side) is the paper's edge,
TABLE_SHARE = 0.5        # ... and so is ink whose component lies at least this much in that region;
PAGE_EDGE = 0.03         # what is left nearly all (PAGE_EDGE_SHARE) within this fraction of the shorter side
PAGE_EDGE_SHARE = 0.9    # ... of that region is the page's outline (a digit on the page is taller than that)
LINES_AT = 512           # lines are looked for on a copy this many pixels on its longest side
LINE_LENGTH = 0.4        # a ruled line runs straight for at least this fraction of the image's width (height)
RUN = 5                  # ... and is looked for among runs this long at least (pixels of that copy, see _running)
LINE_TILT = 8            # ... within this many degrees of level (plumb)
LINE_SLENDER = 40        # ... and is at least this many times longer than thick (a thin-pen 1: ~25)
LINE_LEVEL = 0.9         # a line's darkness: this quantile of the ink on it (its core, not its faint halo)
LINE_SECTIONS = 16       # ... measured in this many stretches along it, the median taken
LINE_JOIN_ANGLE = 0.02   # pieces of one line: directions within this (radians, about 1 degree) and
LINE_JOIN_GAP = 2.5      # ... ends within this many pixels (of the small copy) of the longest piece's line
RULED_FAMILY = 3         # a shorter piece is a ruled line too when this many others run parallel to it
LINE_PRESENT = 0.6       # a line with ink along less than this share of its course across the image is one
FAMILY_SPREAD = 0.3      # ... only with RULED_FAMILY others parallel to it, spread this share of the image across
GRID_MIN = 4             # lines of one way this many or more, evenly spaced (their gaps within GRID_EVEN of the
GRID_EVEN = 0.25         # ... usual one), are a grid: a line missed where the spacing puts one is one of them
GRID_ROOM = 2.5          # ... if they lie this many times their band's width apart at least (bands closer than
                         # that leave too little paper between them to tell a stroke across one: remove_lines)
EDGE_CONTACT = 0.15      # ink touching the image's edge along this fraction of a side is the table or
                         # the paper's edge, and so is ink touching two opposite edges
JOIN = 0.06              # a component joins the writing within JOIN + JOIN_SIZE * sqrt(its share of the
JOIN_SIZE = 0.4          # core's ink) times the core's size; a tiny speck must almost touch it
BAR = 4                  # a component this many times wider than tall, above the writing, is a 5's or 7's
BAR_REACH = 0.5          # ... bar drawn apart from its body: it joins within this times the core's size
LEVEL_SLIVER = 6         # a component this many times wider than tall is no digit's core, and in a photo
SLIVER_OVER = 0.5        # ... joins the writing only if this share of its length lies over the writing
SPECK = 0.0002           # components smaller than this fraction of the image (and of 4 px) are noise
PHOTO_FLOOR = 16         # ... but in a photo a component of this many pixels may be the digit's core
FAINT = 0.15             # in a photo, ink under this fraction of the writing's firm ink is not the writing,
FAINT_PART = 0.35        # ... nor a component whose mean ink is under this fraction of the core's
FRAME_IMAGE = 100        # no printed box is looked for in an image smaller than this (an MNIST-sized crop: at
                         # a few pixels a side a narrow 0 or 9 is as square as a box)
FRAME_MIN = 12           # a printed box (a form's) is this many pixels of the small copy across at least,
FRAME_FILL = 0.7         # ... its ink under this share of its rectangle (a ring, not a blot or a stroke),
FRAME_SIDE = 0.9         # ... inked along this share of each of its sides (a digit's curve only touches them),
FRAME_WALL = 0.15        # ... its walls no thicker than this share of its size (and 3 px: see _walls),
FRAME_OPEN = 0.3         # ... the room inside them this share of it at least,
FRAME_HOLLOW = 0.35      # ... and little ink in that room: under this share (a digit written in it);
FRAME_ACROSS = 0.97      # a wall inside it (a comb's) is inked along this share of the box at least
FRAME_HAZE = 0.05        # boxes are looked for in the ink over this (of firm ink), not in the haze just over it
NEXT_TALL = 0.4          # reading a number: the next digit is at least this x the core's height, and
NEXT_LEVEL = 0.5         # ... this share of its height is level with the writing, and
NEXT_GAP = 2.5           # ... it is within this many core heights of the writing, left or right


def _binary(ink: np.ndarray) -> np.ndarray:
    return (ink > 0).astype(np.uint8)


def outside_paper(gray: np.ndarray) -> np.ndarray | None:
    """bool HxW: the region outside the page (dark, solid, touching the image's edge), or None if none (and
    none is looked for in an image under TABLE_IMAGE: a crop, whose strokes are as wide as a table would be)."""
    h, w = gray.shape
    if max(h, w) < TABLE_IMAGE:
        return None
    f = min(1.0, ANALYSIS / max(h, w))
    small = cv2.resize(gray, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    # A median keeps the page's edge where it is and wipes out thin lines and strokes, which would look sharp.
    raw = small
    u8 = cv2.medianBlur((small * 255).astype(np.uint8), 5)
    small = u8.astype(np.float32) / 255
    _, dark = cv2.threshold(u8, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    side = min(small.shape)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, int(SOLID * side)),) * 2)
    grad = []  # the steepest climb within two pixels of each point (made once, where first needed: _steepest)
    out = np.zeros_like(dark)
    for region in _solid_at_edge(dark, k):
        step, soft = _boundary(region, small, k, grad)
        if soft > SOFT_SHARE and region.mean() <= GROUND:
            # Part of this boundary is soft: the page in a shadow was as dark as the table, and the two are
            # one region. The table is the darker part of it, its edge with the shaded page a step.
            inside = region.astype(bool)
            t, _ = cv2.threshold(u8[inside], 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
            for table in _solid_at_edge((inside & (u8 <= t)).astype(np.uint8), k):
                out |= table * _is_table(*_boundary(table, small, k, grad))
        elif _is_table(step, soft):
            out |= region
    # and the desk beyond the page's straight edges: a light one, or one as mottled as the page's light is
    # uneven, not found as dark (or only in part)
    edges = _beyond_page_edges(u8, small, grad)
    if (out | edges).mean() <= 1 - PAGE_LEFT:
        out |= edges
    desk = _beyond_page_edges(u8, small, grad, raw=raw)
    if (out | desk).mean() <= 1 - DESK_PAGE:
        out |= desk
    if not out.any():
        return None
    if out.mean() > GROUND:  # the dark ground itself (light ink on dark, a dark page): not a table
        return None
    band = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_odd(2 * EDGE_BAND * side),) * 2)
    out = cv2.dilate(out, band)
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def _beyond_page_edges(u8: np.ndarray, small: np.ndarray, grad: list, raw: np.ndarray | None = None) -> np.ndarray:
    """uint8 mask of the copy: what lies beyond the page's straight edges (the page is convex, so the region
    outside it is the union of the half-planes beyond its edges). An edge: a straight step across the copy
    (found by a Hough transform of its Canny edges), along EDGE_COVER of its course across the image darker
    on one side (the same side) by EDGE_STEP, and sharp (climbing SHARP of its step per pixel, as the page's
    own edge does and a shadow's does not), darker than the page by EDGE_STEP out to EDGE_DEPTH beyond it, and
    leaving the page at least PAGE_LEFT of the image (outside_paper adds them only while, with the table, they
    still do). A ruled or printed line is no edge: it is the same paper on both of its sides; nor is a stroke's
    straight edge: past the stroke lies paper again.

    raw given (the copy before its median filter): a desk as light as the page (no step, or one too small to
    tell), told by its texture (_textured, over TEXTURE): the edges are looked for among fainter Canny edges,
    and an edge is one along which, at each EDGE_DEPTH, the desk's side varies along DESK_ROUGH of it and the
    page's side (past the first depth, which the measure's reach blurs) along under 1 - PAGE_SMOOTH of it;
    all that lies beyond it varies over DESK_ALL of it (a band of print has paper past it) and the page's
    side under 1 - PAGE_SMOOTH of it; and its darkest marks (the 1st percentile) are no darker than the
    page's by DESK_INK (ink written beyond it: a filled-in row of boxes along the image's edge)."""
    h, w = small.shape
    out = np.zeros((h, w), np.uint8)
    length = EDGE_LENGTH * min(h, w)
    texture = raw is not None
    canny = (8, 20) if texture else (20, 50)  # (a desk told by its texture: fainter steps too)
    lines = cv2.HoughLines(cv2.Canny(cv2.GaussianBlur(u8, (5, 5), 1.5), *canny), 1, np.pi / 180, int(length))
    if lines is None:
        return out
    local = _textured(small) if texture else _steepest(small, grad)  # its texture, or its steepest climb
    xx, yy = np.arange(w, dtype=np.float32)[None], np.arange(h, dtype=np.float32)[:, None]
    corners = np.array([(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)], np.float64)
    seen: list[tuple[float, float]] = []
    for rho, theta in lines[:, 0]:  # the most voted first
        if len(seen) == EDGE_TRIES:
            break
        if any(abs(rho - r) < 4 and abs(theta - t) < np.radians(2) for r, t in seen):
            continue  # the same line, a pixel or a degree off
        seen.append((rho, theta))
        nrm = np.array([np.cos(theta), np.sin(theta)])
        p0, u = rho * nrm, np.array([-nrm[1], nrm[0]])
        # the line's course across the image, sampled every 2 px, and the step across it a few px to each side
        ts = [(lim - p0[k]) / u[k] for k, top in ((0, w - 1), (1, h - 1)) if abs(u[k]) > 1e-9 for lim in (0, top)]
        ts = [t for t in ts if -0.5 <= p0[0] + t * u[0] <= w - 0.5 and -0.5 <= p0[1] + t * u[1] <= h - 0.5]
        if len(ts) < 2 or max(ts) - min(ts) < length:
            continue
        at = p0 + np.linspace(min(ts), max(ts), int((max(ts) - min(ts)) / 2))[:, None] * u

        def sample(image: np.ndarray, offset: float) -> np.ndarray:
            q = (at + offset * nrm).astype(np.float32)
            return cv2.remap(image, q[:, :1], q[:, 1:], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[:, 0]

        def inside(offset: float) -> np.ndarray:
            q = at + offset * nrm
            return (q[:, 0] >= 0) & (q[:, 0] <= w - 1) & (q[:, 1] >= 0) & (q[:, 1] <= h - 1)

        if texture:  # the desk's side: the one that varies more along it (where it lies in the image at all)
            rough = np.array([[_share(sample(local, side * d * min(h, w)) > TEXTURE, inside(side * d * min(h, w)))
                               for d in EDGE_DEPTH] for side in (1, -1)])
            sign = 1.0 if rough[0].sum() < rough[1].sum() else -1.0
            page, desk = rough if sign > 0 else rough[::-1]
            # (the page's side from the second depth on: the measure's reach blurs the desk's edge)
            if desk.min() < DESK_ROUGH or page[1:].max() > 1 - PAGE_SMOOTH:
                continue
        else:
            steps = np.median([sample(small, k) - sample(small, -k) for k in (3, 4, 5)], axis=0)
            sign = 1.0 if np.median(steps) > 0 else -1.0
            edge = (steps * sign >= EDGE_STEP) & (sample(local, 0) >= SHARP * steps * sign)
            if edge.mean() < EDGE_COVER:
                continue
        # The image goes on EDGE_DEPTH beyond it (a line along the image's border has no room beyond it to tell),
        # and it stays darker than the page out to there (a stroke's straight edge, a large '1''s, has paper
        # again past the stroke).
        if float(((corners - p0) @ nrm * -sign).max()) < EDGE_DEPTH[-1 if texture else 1] * min(h, w):
            continue  # (a desk told by its texture further: a line's own band of it is no desk)
        if not texture:
            page_level = float(np.median(sample(small, 4 * sign)))
            if max(float(np.median(sample(small, -sign * d * min(h, w)))) for d in EDGE_DEPTH) > page_level - EDGE_STEP:
                continue
        beyond = ((xx - p0[0]) * nrm[0] + (yy - p0[1]) * nrm[1]) * sign < 0  # the desk's side
        if texture and (float((local[beyond] > TEXTURE).mean()) < DESK_ALL or
                        float((local[~beyond] > TEXTURE).mean()) > 1 - PAGE_SMOOTH or
                        np.percentile(raw[beyond], 1) < np.percentile(raw[~beyond], 1) - DESK_INK):
            continue  # a band of print (paper past it, or ink far darker than the page's: written on) is no desk
        if beyond.mean() <= 1 - PAGE_LEFT:
            out |= beyond.astype(np.uint8)
    return out


def _share(on: np.ndarray, where: np.ndarray) -> float:
    """The share of `where` that is `on`; 0 where `where` is under half of it (too little of it to tell)."""
    return float(on[where].mean()) if where.mean() >= 0.5 else 0.0


def _textured(small: np.ndarray) -> np.ndarray:
    """How much the copy varies across every direction near each point: the local structure tensor's smaller
    eigenvalue (OpenCV's cornerMinEigenVal), as a root, blurred. A desk's grain or mottle varies every way;
    paper does not, and a straight step (the page's edge, a shadow's, a ruled line) varies one way only."""
    return np.sqrt(np.maximum(cv2.GaussianBlur(cv2.cornerMinEigenVal(small, 7, 3), (0, 0), 3), 0))


def _solid_at_edge(dark: np.ndarray, k: np.ndarray) -> list[np.ndarray]:
    """The dark areas wider than any stroke (an opening by k) that reach the copy's edge, each as a uint8 mask."""
    solid = cv2.morphologyEx(dark, cv2.MORPH_OPEN, k)
    _, labels = cv2.connectedComponents(solid, connectivity=4)
    edges = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return [(labels == i).astype(np.uint8) for i in np.unique(edges) if i]


def _boundary(region: np.ndarray, small: np.ndarray, k: np.ndarray, grad: list) -> tuple[float, float]:
    """-> (how much darker the region is than just around it, the share of its boundary that climbs less
    than SHARP of that step per pixel). The page's edge is sharp; a shadow's is soft: a page edge climbs
    nearly all of its step within a pixel or two of this copy, a hand's shadow over many. grad: [] or the
    gradient map made for an earlier region."""
    edge = (region - cv2.erode(region, np.ones((3, 3), np.uint8))).astype(bool)  # its boundary's pixels
    edge[[0, -1], :] = edge[:, [0, -1]] = False  # the image's own edge is no boundary
    if not edge.any():  # the whole image
        return 0.0, 0.0
    around = (cv2.dilate(region, k) - region).astype(bool)
    step = float(np.median(small[around])) - float(np.median(small[region.astype(bool)]))
    return step, float((_steepest(small, grad)[edge] < SHARP * step).mean())


def _steepest(small: np.ndarray, grad: list) -> np.ndarray:
    """The steepest climb within two pixels of each point of the copy (made once: grad holds it after)."""
    if not grad:
        gy, gx = cv2.Sobel(small, cv2.CV_32F, 0, 1, ksize=3) / 8, cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3) / 8
        grad.append(cv2.dilate(np.hypot(gx, gy), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))))
    return grad[0]


def _is_table(step: float, soft: float) -> bool:
    """A table: darker than the page by TABLE_STEP, its boundary sharp along most of it."""
    return step >= TABLE_STEP and soft <= 0.5


def _odd(n: float) -> int:
    return max(3, int(n) // 2 * 2 + 1)


def _collinear(segs: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Hough segments (x0, y0, x1, y1) -> lines: segments of the same line joined (a thin line that is
    faint in places or tilted a little comes out of the transform in pieces: a staircase of 1 px steps, or
    dashes). -> [(the longest piece, the length the pieces cover together)]."""
    order = np.argsort(-np.hypot(segs[:, 2] - segs[:, 0], segs[:, 3] - segs[:, 1]))
    groups = []  # [longest piece, unit direction, unit normal, offset, intervals along the direction]
    for x0, y0, x1, y1 in segs[order]:
        d = np.array([x1 - x0, y1 - y0], np.float64)
        unit = d / np.linalg.norm(d)
        for g in groups:
            u, nrm, rho = g[1], g[2], g[3]
            if abs(float(np.dot(unit, nrm))) < LINE_JOIN_ANGLE and all(
                    abs(float(np.dot((x, y), nrm)) - rho) < LINE_JOIN_GAP for x, y in ((x0, y0), (x1, y1))):
                t = sorted((float(np.dot((x0, y0), u)), float(np.dot((x1, y1), u))))
                g[4].append(t)
                break
        else:
            u = unit
            nrm = np.array([-u[1], u[0]])
            t = sorted((float(np.dot((x0, y0), u)), float(np.dot((x1, y1), u))))
            groups.append([np.array([x0, y0, x1, y1], np.float64), u, nrm, float(np.dot((x0, y0), nrm)), [t]])
    out = []
    for g in groups:
        covered, end = 0.0, -np.inf
        for a, b in sorted(g[4]):
            covered += max(0.0, b - max(a, end))
            end = max(end, b)
        out.append((g[0], covered))
    return out


def _small(mask: np.ndarray) -> tuple[np.ndarray, float]:
    """A binary mask shrunk to LINES_AT pixels on its longest side (never enlarged) -> (copy, its scale)."""
    h, w = mask.shape
    f = min(1.0, LINES_AT / max(h, w))
    small = cv2.resize(mask, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return (small > 0).astype(np.uint8), f


def find_frames(mask: np.ndarray) -> list[tuple[tuple[int, int], tuple[int, int], int]]:
    """The walls of printed boxes in an ink mask (a box to write a digit in, a form's row of them, sharing
    walls or apart), as (end, end, thickness) segments at full size; none in a mask under FRAME_IMAGE pixels
    on its shorter side. A box is a component of the mask, on a small copy, clear of the image's edges, that
    is thin (under FRAME_FILL of its smallest rotated rectangle inked) and, made upright, has straight walls
    around it and maybe across it (_walls), and lies in no other box. A digit touching the box is part of the
    component; its strokes are not straight and long enough to be walls, and where they cross one remove_lines
    keeps them."""
    if min(mask.shape) < FRAME_IMAGE:
        return []
    small, f = _small(mask)
    window = _inked(small)  # (labelled where the ink is: see _inked)
    if window is None:
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(small[window], connectivity=8)
    oy, ox = window[0].start, window[1].start
    frames, boxes = [], []
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if min(bw, bh) < FRAME_MIN or area > FRAME_FILL * bw * bh:
            continue
        comp = (labels[y:y + bh, x:x + bw] == i).astype(np.uint8)
        x, y = x + ox, y + oy
        if x == 0 or y == 0 or x + bw == small.shape[1] or y + bh == small.shape[0]:
            continue  # it runs off the image: a page's ruling or squares, the line finder's
        corners = cv2.boxPoints(cv2.minAreaRect(cv2.findNonZero(comp)))
        across, down = np.linalg.norm(corners[1] - corners[0]), np.linalg.norm(corners[2] - corners[1])
        if min(across, down) < FRAME_MIN or area > FRAME_FILL * across * down:
            continue
        pad = 2  # the rectangle made upright, a margin around it
        upright = np.float32([[pad, pad], [pad + across, pad], [pad + across, pad + down]])
        to = cv2.getAffineTransform(corners[:3].astype(np.float32), upright)
        walls = _walls(cv2.warpAffine(comp, to, (int(across) + 2 * pad + 1, int(down) + 2 * pad + 1),
                                      flags=cv2.INTER_NEAREST))
        if not walls:
            continue
        back = cv2.invertAffineTransform(to)
        box = []
        for level, mid, (lo, hi), thick in walls:
            pts = np.float32([[lo - 1, mid], [hi + 1, mid]] if level else [[mid, lo - 1], [mid, hi + 1]])
            (ax, ay), (bx, by) = (cv2.transform(pts[None], back)[0] + (x, y)) / f
            box.append(((int(round(ax)), int(round(ay))), (int(round(bx)), int(round(by))),
                        int(np.ceil(thick / f)) + 2 + int(1 / f)))
        boxes.append(((x, y, x + bw, y + bh), box))
    # No form prints a box in a box: what lies within one is written in it (a 6's or a 0's ring, squarish).
    for (x0, y0, x1, y1), box in boxes:
        if not any(a[0] <= x0 and a[1] <= y0 and x1 <= a[2] and y1 <= a[3] and a != (x0, y0, x1, y1)
                   for a, _ in boxes):
            frames += box
    return frames


def _walls(r: np.ndarray) -> list[tuple[bool, float, tuple[int, int], int]]:
    """A box's walls in a component made upright (uint8, its smallest rectangle upright in it) -> (level or
    not, the row or column it runs along, from where to where across, its thickness) for each, or [] where
    the component is no box.

    Its walls around it are the outermost rows and columns inked along half of it at least (a speck of noise
    on the box widens the rectangle a little), inked along FRAME_SIDE between each other, and thin
    (FRAME_WALL, FRAME_OPEN); walls inside it (a comb's, a grid's) run all the way across (FRAME_ACROSS: a 1
    written in a box may reach nearly from its top to its bottom). Between them lies little ink (FRAME_HOLLOW:
    the digits written in the cells); a stroke's own rectangle is all ink. Ink along a row or a column is
    measured with a pixel of tolerance either way (the rectangle's angle is measured on pixels), across a wall
    inside alone (so a gap between the 1's end and the wall is not closed)."""
    loose = cv2.dilate(r, np.ones((3, 3), np.uint8))
    half_rows, half_cols = np.nonzero(loose.mean(axis=1) >= 0.5)[0], np.nonzero(loose.mean(axis=0) >= 0.5)[0]
    if len(half_rows) < 2 or len(half_cols) < 2:
        return []
    top, bottom, left, right = half_rows[0], half_rows[-1], half_cols[0], half_cols[-1]
    if min(bottom - top, right - left) < FRAME_MIN:
        return []
    rows = loose[:, left:right + 1].mean(axis=1) >= FRAME_SIDE
    cols = loose[top:bottom + 1].mean(axis=0) >= FRAME_SIDE
    if not (rows[top:top + 3].any() and rows[bottom - 2:bottom + 1].any()
            and cols[left:left + 3].any() and cols[right - 2:right + 1].any()):
        return []
    (t0, t1), (b0, b1) = _run_at(rows, top), _run_at(rows, bottom)
    (l0, l1), (r0, r1) = _run_at(cols, left), _run_at(cols, right)
    if max(t1 - t0, b1 - b0, r1 - r0, l1 - l0) > FRAME_WALL * min(bottom - top, right - left) + 3:
        return []
    # Its walls leave room inside it: a small 0 (a few pixels of this copy) is as thick as a box's walls
    # for its size, and so much of it is wall that its rows and columns run along the walls' length.
    if b0 <= t1 or r0 <= l1 or (b0 - t1) * (r0 - l1) < FRAME_OPEN * (b1 - t0) * (r1 - l0):
        return []
    # (the loose runs reach a pixel past the walls' ink at either end)
    level_in = cv2.dilate(r, np.ones((3, 1), np.uint8))[t1:b0, l0 + 1:r1 - 1].mean(axis=1) >= FRAME_ACROSS
    plumb_in = cv2.dilate(r, np.ones((1, 3), np.uint8))[t0 + 1:b1 - 1, l1:r0].mean(axis=0) >= FRAME_ACROSS
    inside = cv2.erode(loose, np.ones((3, 3), np.uint8))[t1:b0, l1:r0]
    inside = inside[~level_in][:, ~plumb_in]
    if inside.size == 0 or inside.mean() > FRAME_HOLLOW:
        return []
    walls = [(True, (a + b - 1) / 2, (left, right), b - a) for a, b in ((t0, t1), (b0, b1))]
    walls += [(False, (a + b - 1) / 2, (top, bottom), b - a) for a, b in ((l0, l1), (r0, r1))]
    walls += [(True, t1 + (a + b - 1) / 2, (left, right), b - a) for a, b in _runs(level_in)]
    walls += [(False, l1 + (a + b - 1) / 2, (top, bottom), b - a) for a, b in _runs(plumb_in)]
    return [(level, mid, span, max(1, width - 2)) for level, mid, span, width in walls]  # less the tolerance


def _run_at(on: np.ndarray, at: int) -> tuple[int, int]:
    """The run of True in a bool vector that holds `at` or lies within 2 of it -> (start, stop)."""
    return next((a, b) for a, b in _runs(on) if a - 2 <= at < b + 2)


def _runs(on: np.ndarray) -> list[tuple[int, int]]:
    """The runs of True in a bool vector, as (start, stop)."""
    edges = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
    return list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]))


def find_lines(mask: np.ndarray) -> list[tuple[tuple[int, int], tuple[int, int], int]]:
    """The ruled and margin lines in an ink mask, as (end, end, thickness) at full size: straight segments
    found by a probabilistic Hough transform on a small copy (a line tilted in a photo is still one line),
    pieces of one line joined, nearly level or plumb, long and thin, extended across the page (a ruled line
    runs on past what the transform found of it), and with ink along its course or in a family of ruled
    lines (_ruled_or_present: not a row of digits' level strokes)."""
    h, w = mask.shape
    small, f = _small(mask)
    sh, sw = small.shape
    piece = LINE_LENGTH / 2 * min(sh, sw)

    def hough(m: np.ndarray) -> np.ndarray:
        segs = cv2.HoughLinesP(m, 1, np.pi / 360, threshold=max(10, int(0.35 * piece)), minLineLength=piece,
                               maxLineGap=max(2, int(0.03 * max(sh, sw))))
        return np.zeros((0, 4), np.float64) if segs is None else segs.reshape(-1, 4).astype(np.float64)

    segs = hough(small)
    lines = []
    if not len(segs):
        return lines
    groups = _collinear(segs)
    # Squared paper: the transform bridges the gaps between the plumb lines along a row between two level
    # ones and takes that row for a line, whose pixels (the plumb lines') are then gone, so most plumb lines
    # are never found (or level ones). On ruled paper the level and plumb lines are looked for apart too,
    # each without the thin lines across it (_running); when both come as a family, that is what is found.
    # The way the page shows no family is looked at first: on ruled paper (plumb: a margin line at most)
    # that is all the extra work.
    level = _family(groups, True)
    if level or _family(groups, False):
        apart = {}
        for way in (False, True) if level else (True, False):
            apart[way] = hough(_running(small, way))
            if not _family(_collinear(apart[way]), way):
                break
        else:
            groups = _collinear(np.concatenate([apart[True], apart[False]]))
    # Ruled lines come as a family: parallel, one above the other. A faint line that noise broke into
    # dashes shows only a piece of itself (each piece is at least half a line's length: the transform's
    # minimum); with RULED_FAMILY others parallel to it, it is one of the family all the same.
    angle = np.array([np.arctan2(seg[3] - seg[1], seg[2] - seg[0]) % np.pi for seg, _ in groups])
    turn = np.abs(angle[:, None] - angle[None, :])
    parallel = (np.minimum(turn, np.pi - turn) < LINE_JOIN_ANGLE).sum(axis=1) - 1
    for (seg, covered), family in zip(groups, parallel):
        x0, y0, x1, y1 = seg / f
        dx, dy = abs(x1 - x0), abs(y1 - y0)
        length = np.hypot(dx, dy)
        if _tilt(dx, dy) > LINE_TILT or covered / f < LINE_LENGTH * (w if dx > dy else h) and family < RULED_FAMILY:
            continue
        # how thick: the ink in a band along the segment, wide enough to hold a stroke too thick to be a line
        band = np.zeros_like(mask)
        cv2.line(band, (int(x0), int(y0)), (int(x1), int(y1)), 1, int(length / LINE_SLENDER) + int(2 / f) + 3)
        thickness = cv2.countNonZero(band & mask) / length
        if thickness * LINE_SLENDER > covered / f or thickness > 0.05 * min(h, w):
            continue
        # For one of a family of ruled lines that band may also hold the next ones (closely ruled paper at a
        # reduced scale): a thin line is measured again in a band just wider than itself, so the band
        # removed is no wider than the line, and the strokes of a small digit that cross it are not taken
        # with it (nor does the refit below reach the neighbours).
        if family >= RULED_FAMILY:
            narrow = int(2 / f) + 3
            band[:] = 0
            cv2.line(band, (int(x0), int(y0)), (int(x1), int(y1)), 1, narrow)
            thin = cv2.countNonZero(band & mask) / length
            if thin < 0.75 * narrow:
                thickness = min(thickness, thin)
        (ax, ay), (bx, by) = _fit_line(mask, (x0, y0), (x1, y1), int(np.ceil(thickness)) + 2 + int(2 / f))
        thick = int(np.ceil(thickness)) + 2 + int(1 / f)
        # A piece of a line already found, at a slightly different angle (a stroke in line with its dash):
        # drawn again it would only widen the band removed across the writing.
        if any(_same_line(((ax, ay), (bx, by)), line[:2], max(thick, line[2]), h, w) for line in lines):
            continue
        lines.append(((ax, ay), (bx, by), thick))
    return _ruled_or_present(lines, small, f)


def _ends_at(across: tuple[float, float], level: bool, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """A line given where it crosses the image's first and last column (level) or row (plumb) -> two ends
    far outside the image, as find_lines gives them."""
    (p, q), n = across, (w if level else h)
    reach = (h + w) / max(n, 1)
    ends = [(t * n, p + t * (q - p)) for t in (-reach, 1 + reach)]
    return tuple((round(a), round(b)) if level else (round(b), round(a)) for a, b in ends)


def _complete_grid(lines: list, mask: np.ndarray) -> list[tuple[tuple, list[int]]]:
    """The lines of an evenly spaced family (ruled or squared paper: GRID_MIN lines or more of one way, most
    gaps between neighbours the usual spacing) that the transform missed: in a gap of k spacings, the k - 1
    lines between, each refitted to the ink near it -> [(the line, the indices in `lines` of its family)]. A
    grid line faint in places, or broken into dashes shorter than the transform's minimum, has too little ink
    along it to be found on its own, and what it has is a row of 1s' strokes on a blank page. Its darkness is
    its family's (remove_lines): where it has no ink of its own, the digit's strokes along it would be all
    there is to measure. None is added beyond the outermost lines: the image may end before the next line,
    and a band along its edge would part a margin line from the edge that marks it as no writing."""
    h, w = mask.shape
    out = []
    for level in (True, False):
        n = w if level else h
        members = [i for i, ln in enumerate(lines) if _level(ln[:2]) == level]
        family = sorted(((_across(lines[i][:2], 0), _across(lines[i][:2], n)), lines[i][2]) for i in members)
        if len(family) < GRID_MIN:
            continue
        middle = np.array([(p + q) / 2 for (p, q), _ in family])
        gaps = np.diff(middle)
        spacing = float(np.median(gaps))
        if spacing <= 0 or (np.abs(gaps - spacing) < GRID_EVEN * spacing).sum() < GRID_MIN - 1:
            continue
        thick = int(np.median([t for _, t in family]))
        if spacing < GRID_ROOM * thick:
            continue
        missing = []
        for ((p0, q0), _), ((p1, q1), _), gap in zip(family, family[1:], gaps):
            k = round(gap / spacing)
            if k >= 2 and abs(gap / k - spacing) < GRID_EVEN * spacing:
                missing += [(p0 + (p1 - p0) * m / k, q0 + (q1 - q0) * m / k) for m in range(1, k)]
        for across in missing:
            a, b = _ends_at(across, level, h, w)
            fit = _fit_line(mask, a, b, min(thick + 2, max(3, int(spacing / 3))))
            if abs(_across(fit, n / 2) - _across((a, b), n / 2)) < GRID_EVEN * spacing:
                a, b = fit
            out.append(((a, b, thick), members))
    return out


def _tilt(dx: float, dy: float) -> float:
    """Degrees off level or plumb, whichever is nearer, of a segment spanning dx by dy pixels."""
    return float(np.degrees(np.arctan2(min(dx, dy), max(dx, dy))))


def _family(groups: list[tuple[np.ndarray, float]], level: bool) -> bool:
    """Whether lines (_collinear's) hold a family of ruled lines: more than RULED_FAMILY lines, each within
    LINE_TILT of level (plumb)."""
    count = 0
    for (x0, y0, x1, y1), _ in groups:
        dx, dy = abs(x1 - x0), abs(y1 - y0)
        count += (dx > dy) == level and _tilt(dx, dy) <= LINE_TILT
    return count > RULED_FAMILY


def _running(small: np.ndarray, level: bool) -> np.ndarray:
    """The pixels of a binary mask on runs at least RUN long, level or plumb, once the mask is thickened by
    a pixel each way (a thin line tilted up to LINE_TILT is a staircase of short runs, a faint one a row of
    dashes): what may be a level (plumb) line, without the thin lines across it, which are narrower."""
    along = (RUN, 1) if level else (1, RUN)
    thick = cv2.dilate(small, np.ones((3, 3), np.uint8))
    return small & cv2.morphologyEx(thick, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, along))


def _ruled_or_present(lines: list, small: np.ndarray, f: float) -> list:
    """The lines that have ink along most (LINE_PRESENT) of their course across the image, or belong to a
    family of ruled lines spread across the page. The transform bridges gaps, so the level bottoms and bars of
    a row of digits (a number) line up into a "line" too; its ink stops where the writing does and lies in one
    band, where a ruled line's runs on across the page, or (faint, broken by noise) is one of many."""
    h, w = small.shape
    present, level, across = [], [], []
    for ends in (line[:2] for line in lines):
        (ax, ay), (bx, by) = ends
        band = np.zeros_like(small)
        cv2.line(band, (round(ax * f), round(ay * f)), (round(bx * f), round(by * f)), 1, 3)
        flat = _level(ends)
        course, inked = band.any(axis=0 if flat else 1), (band & small).any(axis=0 if flat else 1)
        present.append(float(inked[course].mean()) if course.any() else 0.0)
        level.append(flat)
        # where it crosses the image's middle, as a share of the image across it
        along, side = (w, h) if flat else (h, w)
        across.append(_across(ends, along / 2 / f) * f / side)
    angle = np.array([np.arctan2(b[1] - a[1], b[0] - a[0]) % np.pi for a, b, _ in lines])
    kept = []
    for i, line in enumerate(lines):
        if present[i] < LINE_PRESENT:
            turn = np.abs(angle - angle[i])
            family = [j for j in range(len(lines)) if level[j] == level[i]
                      and min(turn[j], np.pi - turn[j]) < 2 * LINE_JOIN_ANGLE]
            spread = max(across[j] for j in family) - min(across[j] for j in family)
            if len(family) <= RULED_FAMILY or spread < FAMILY_SPREAD:
                continue
        kept.append(line)
    return kept


def _level(line) -> bool:
    """Whether a line (a pair of ends) runs nearer level than plumb."""
    (ax, ay), (bx, by) = line
    return abs(bx - ax) >= abs(by - ay)


def _across(line, t: float) -> float:
    """Where a line (a pair of ends) crosses column t if it is level, row t if it is plumb."""
    (ax, ay), (bx, by) = line
    if _level(line):
        return ay + (t - ax) * (by - ay) / (bx - ax) if bx != ax else np.inf
    return ax + (t - ay) * (bx - ax) / (by - ay) if by != ay else np.inf


def _same_line(p, q, within: float, h: int, w: int) -> bool:
    """Whether lines p and q (pairs of ends) run within `within` pixels of each other across the image."""
    level = _level(p)
    if level != _level(q):
        return False
    return all(abs(_across(p, t) - _across(q, t)) <= within for t in (0, w if level else h))


def _fit_line(mask: np.ndarray, a, b, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The line through segment a-b refitted to the ink within `width` of it across the whole image (the
    transform's angle is coarse: over a page a line drawn from it drifts off the ruled line by pixels) ->
    its two ends far outside the image."""
    h, w = mask.shape
    (x0, y0), (x1, y1) = a, b
    length = float(np.hypot(x1 - x0, y1 - y0))
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    reach = h + w
    ends = [(x0 - reach * ux, y0 - reach * uy), (x1 + reach * ux, y1 + reach * uy)]
    # Only the rows (level line) or columns (plumb line) the band can cross are looked at.
    if abs(ux) >= abs(uy):
        ya, yb = y0 + (0 - x0) * uy / ux, y0 + (w - x0) * uy / ux
        r0, r1 = max(0, int(min(ya, yb)) - width), min(h, int(max(ya, yb)) + width + 1)
        c0, c1 = 0, w
    else:
        xa, xb = x0 + (0 - y0) * ux / uy, x0 + (h - y0) * ux / uy
        c0, c1 = max(0, int(min(xa, xb)) - width), min(w, int(max(xa, xb)) + width + 1)
        r0, r1 = 0, h
    if r1 - r0 < 2 or c1 - c0 < 2:
        return tuple(map(int, ends[0])), tuple(map(int, ends[1]))
    band = np.zeros((r1 - r0, c1 - c0), np.uint8)
    cv2.line(band, (int(ends[0][0] - c0), int(ends[0][1] - r0)), (int(ends[1][0] - c0), int(ends[1][1] - r0)), 1, width)
    pts = cv2.findNonZero(band & mask[r0:r1, c0:c1])
    if pts is None or len(pts) < 10:
        return tuple(map(int, ends[0])), tuple(map(int, ends[1]))
    vx, vy, px, py = cv2.fitLine(pts, cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
    if vx * ux + vy * uy < 0:
        vx, vy = -vx, -vy
    px, py = px + c0, py + r0
    return (int(px - reach * vx), int(py - reach * vy)), (int(px + reach * vx), int(py + reach * vy))


def _line_levels(ids: np.ndarray, ink: np.ndarray, along: np.ndarray, n: int, bins: int = 128,
                 top: float = 4.0) -> np.ndarray:
    """float32 (n,): each line's own darkness: in each of LINE_SECTIONS stretches along it (along: each
    pixel's stretch) the LINE_LEVEL quantile of its ink (the line's core, not the faint halo beside it), and
    the median over the stretches that have ink (a digit written along the line darkens only a few); from
    histograms over [0, top]. 0 for id 0 and for a line with no ink."""
    b = np.minimum((ink * (bins / top)).astype(np.int64), bins - 1)
    key = (ids.astype(np.int64) * LINE_SECTIONS + along) * bins + b
    hist = np.bincount(key, minlength=n * LINE_SECTIONS * bins).reshape(n, LINE_SECTIONS, bins)
    cum = np.cumsum(hist, axis=2)
    total = cum[:, :, -1:]
    q = (np.argmax(cum >= LINE_LEVEL * np.maximum(total, 1), axis=2) + 0.5) * (top / bins)
    q = np.where(total[:, :, 0] > 0, q, np.nan)
    has = ~np.isnan(q).all(axis=1)
    level = np.zeros(n, np.float32)
    level[has] = np.nanmedian(q[has], axis=1)
    level[0] = 0
    return level


def remove_lines(ink: np.ndarray) -> np.ndarray:
    """The ink without ruled and margin lines and a form's boxes, keeping the strokes that cross them: a line
    pixel with ink on both sides of it across the line stays, and so does ink darker than the line it lies on
    (a 2's base written along a ruled line). Each line is its own measure: a margin line darker than the ruled
    lines is no writing. A line added to a grid (_complete_grid) takes its family's."""
    mask = _binary(ink)
    # A form's boxes first: a row of them is a family of short plumb lines between two long level ones, which
    # the line finder would join with the digits' strokes into lines across the writing. They are looked for
    # without the faintest ink: the haze of uneven light just over the noise (a shadow along the image's
    # edge, the paper's grain beside a wall) may tie a box to the image's edge or blur its walls.
    found = find_frames((ink > FRAME_HAZE).astype(np.uint8))
    rest = mask
    if found:
        rest = mask.copy()
        for a, b, thick in found:
            cv2.line(rest, a, b, 0, thick)
    lines = find_lines(rest)
    added = _complete_grid(lines, rest)
    found += lines + [line for line, _ in added]
    if not found:
        return ink
    ids = np.zeros(ink.shape, np.int32)
    for i, (a, b, thick) in enumerate(found):
        cv2.line(ids, a, b, i + 1, thick)
    on = (ids > 0) & mask.astype(bool)
    ys, xs = np.nonzero(on)
    h, w = ink.shape
    plumb = np.array([False] + [abs(b[1] - a[1]) > abs(b[0] - a[0]) for a, b, _ in found])[ids[ys, xs]]
    along = np.where(plumb, ys * LINE_SECTIONS // h, xs * LINE_SECTIONS // w)
    level = _line_levels(ids[ys, xs], ink[ys, xs], along, len(found) + 1)
    first = len(found) - len(added) - len(lines)  # the lines' ids: 1 + index in found (frames' walls first)
    for k, (_, family) in enumerate(added):
        level[1 + len(found) - len(added) + k] = np.median(level[[1 + first + i for i in family]])
    for i in np.argsort(level[1:]):  # where lines cross, the darker one's level
        a, b, thick = found[i]
        cv2.line(ids, a, b, int(i) + 1, thick)
    lines = on.astype(np.uint8)
    level = level[ids] * lines
    keep = mask & (1 - lines)
    span = 2 * int(np.ceil(cv2.countNonZero(lines) / max(1, cv2.countNonZero(cv2.erode(lines, np.ones((3, 3), np.uint8))) or 1))) + 5
    span = min(span, 15)
    rejoined = (cv2.morphologyEx(keep, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (1, span)))
                | cv2.morphologyEx(keep, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (span, 1))))
    darker = (ink > np.maximum(1.5 * level, level + 0.25)).astype(np.uint8)  # none where a line is as dark as ink
    return ink * (keep | (rejoined & lines) | (darker & lines))


def _at_edge(labels: np.ndarray, n: int, shape: tuple[int, int]) -> np.ndarray:
    """bool per component (label 1..n-1): the table or the paper's edge, i.e. touching the image's edge
    along EDGE_CONTACT of a side, or touching two opposite edges. labels: of the image (shape: its h, w), or
    of a window of it whose sides are either the image's or clear of ink (see _inked)."""
    h, w = shape
    sides = [(labels[0], w), (labels[-1], w), (labels[:, 0], h), (labels[:, -1], h)]
    counts = [np.bincount(line, minlength=n)[1:] for line, _ in sides]
    broad = np.any([c >= EDGE_CONTACT * size for c, (_, size) in zip(counts, sides)], axis=0)
    across = ((counts[0] > 0) & (counts[1] > 0)) | ((counts[2] > 0) & (counts[3] > 0))
    return broad | across


def keep_writing(ink: np.ndarray, photo: bool = False, line: bool = False) -> np.ndarray:
    """The ink of the writing: the largest component and the components near it for their size. photo:
    components at the image's edge (the table, the paper's edge) are not writing, unless nothing else is
    (a tightly cropped digit; then still no level sliver, what is left of a ruled line). line: also the next
    digits of a number on the writing's line (see the module's docstring); without it, a single digit's
    writing exactly (the browser's keepWriting). In line mode the components are those of the firm ink (over
    INK_THRESHOLD, as the digits are segmented): a faint haze that hangs on to one digit (uneven light) must
    not tie it to the image's edge; each kept component keeps its faint rim (one pixel around it)."""
    mask = (ink > INK_THRESHOLD).astype(np.uint8) if line else _binary(ink)
    window = _inked(mask)
    if window is None:
        return ink
    out = np.zeros_like(ink)
    out[window] = _keep(ink[window], mask[window], ink.shape, photo, line)
    return out


def _inked(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The window of a mask that components are labelled in: its inked rectangle and a rim of one pixel
    (where the image has one), or None when nothing is inked. OpenCV's component statistics visit every
    pixel they are given, the paper's too: on a photo's ink map most of the clean-up's time went there. The
    window starts at even rows and columns (OpenCV labels 2x2 blocks), so the components, their order and
    everything computed from them are those of the whole mask."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0:
        return None
    x0, y0 = max(x - 1, 0) // 2 * 2, max(y - 1, 0) // 2 * 2
    return slice(y0, min(y + h + 1, mask.shape[0])), slice(x0, min(x + w + 1, mask.shape[1]))


def _keep(ink: np.ndarray, mask: np.ndarray, shape: tuple[int, int], photo: bool, line: bool) -> np.ndarray:
    """keep_writing on ink and its binary mask (the window _inked gives of them); shape: the whole input's
    (the speck floor's scale, the image's edges)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return ink
    stats = stats[1:]
    areas = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    edge = _at_edge(labels, n, shape) if photo else np.zeros(len(areas), bool)
    floor = max(4.0, SPECK * (shape[0] * shape[1]))
    # In a photo a digit may be small against the page (one ruled line high on a whole sheet): the floor is
    # then set by the core, so a piece of it (a 5's bar) still joins it.
    inner = np.where(~edge & (areas >= (PHOTO_FLOOR if photo else floor)))[0]
    # The core: the most ink, but a level sliver (what is left of a ruled line) counts for little. In a photo
    # the ink is weighed, not its area: a wide faint halo (paper texture or a ruled line just over the
    # threshold) covers more pixels than a small firm digit.
    on = mask.view(bool)  # the labelled pixels alone: the same sums, a fraction of the work
    mass = np.bincount(labels[on], weights=ink[on], minlength=n)[1:] if photo else areas
    # In a photo a level sliver is no core at all while anything else is left: the residue of a faint ruled
    # line can outweigh a digit written one line high on a whole page.
    sliver = stats[:, 2] > LEVEL_SLIVER * stats[:, 3]
    weight = mass * np.where(sliver, 1e-3 if photo else 0.1, 1.0)
    if len(inner):
        core = int(inner[np.argmax(weight[inner])])
    else:  # only what touches the edge: a tightly cropped digit, but never a level sliver (a line's residue)
        pool = np.where(~sliver)[0] if photo else np.arange(len(areas))
        if not len(pool):
            return np.zeros_like(ink)
        core, edge = int(pool[np.argmax(areas[pool])]), np.zeros(len(areas), bool)
    if photo:
        floor = max(4.0, min(floor, 0.1 * areas[core]))
    boxes = stats[:, :4].astype(np.float64)  # x, y, w, h
    size = max(boxes[core, 2], boxes[core, 3])
    if photo:  # a level sliver longer than the digit is what is left of a ruled line, not a 5's or 7's bar
        edge = edge | (sliver & (stats[:, 2] > size))

    def firm(i: int) -> float:
        """Component i's mean firm ink (over INK_THRESHOLD: a faint haze of paper texture may hang on to a
        stroke), ink over 1 counted as 1 (firmer than most of the image's ink is firm, see ink._ink)."""
        x, y, w, h = stats[i, :4]
        v = ink[y:y + h, x:x + w][labels[y:y + h, x:x + w] == i + 1]
        v = v[v > INK_THRESHOLD]
        return float(np.minimum(v, 1).mean()) if v.size else 0.0

    core_firm = firm(core) if photo else 0.0
    kept = {core}
    x0, y0 = boxes[core, 0], boxes[core, 1]
    x1, y1 = x0 + boxes[core, 2], y0 + boxes[core, 3]
    grew = True
    while grew:  # grow the writing: a component near the kept ones joins, which may bring others in reach
        grew = False
        for i in range(len(areas)):
            if i in kept or areas[i] < floor or edge[i]:
                continue
            bx, by, bw, bh = boxes[i]
            gap = max(x0 - (bx + bw), bx - x1, y0 - (by + bh), by - y1, 0)
            beside = line and (bh >= NEXT_TALL * boxes[core, 3] and min(y1, by + bh) - max(y0, by) >= NEXT_LEVEL * bh
                               and max(x0 - (bx + bw), bx - x1) <= NEXT_GAP * boxes[core, 3])
            if photo and sliver[i] and min(x1, bx + bw) - max(x0, bx) < SLIVER_OVER * bw:
                continue  # a level sliver mostly beside the writing: a dash of a ruled line, not a 5's bar
            reach = size * (JOIN + JOIN_SIZE * np.sqrt(areas[i] / areas[core]))
            # A level stroke above the writing: a bar lifted off its digit (in a photo not a level sliver, which
            # may as well be a dash of a ruled line).
            if bw >= BAR * bh and by + bh / 2 < y0 and not (photo and sliver[i]):
                reach = max(reach, BAR_REACH * size)
            if beside or gap <= reach:
                # In a photo ink far fainter than the core's is no part of the writing (one pen wrote it):
                # the edge of a soft shadow, a faint line's residue.
                if photo and firm(i) < FAINT_PART * core_firm:
                    edge[i] = True
                    continue
                kept.add(i)
                # In a photo a level sliver (a 5's bar, or a dash of a faint ruled line that noise broke
                # up) joins but brings nothing else in reach: dashes of ruled lines would chain across the page.
                if not (photo and sliver[i]):
                    x0, y0, x1, y1 = min(x0, bx), min(y0, by), max(x1, bx + bw), max(y1, by + bh)
                    grew = True
    lut = np.zeros(n, np.float32)
    lut[[i + 1 for i in kept]] = 1
    if line:
        return ink * cv2.dilate(lut[labels], np.ones((3, 3), np.uint8))
    return ink * lut[labels]


def off_page(ink: np.ndarray, gray: np.ndarray | None, dark: bool = True) -> np.ndarray:
    """Steps 1 and 2: the ink without the region outside the page and the ruled lines (photos and scans
    only: gray is their luma, dark the ink's polarity; gray None for a sketch or a transparent drawing, whose
    ink is returned as it is)."""
    if gray is None:
        return ink
    outside = outside_paper(gray)
    if outside is not None:
        table = _table_ink(ink, outside)
        ink = ink * ~(outside if table is None else outside | table)
        if dark:  # (light ink on a dark ground: the "table" found may be that ground, which the ink borders)
            outline = _page_outline(ink, outside)
            if outline is not None:
                ink = ink * ~outline
    return remove_lines(ink)


def _components_in(binary: np.ndarray, region: np.ndarray, share: float) -> np.ndarray | None:
    """bool HxW: the ink of the binary mask's components that lie at least `share` of them in the region;
    None where there is none."""
    window = _inked(binary)
    if window is None:
        return None
    n, labels = cv2.connectedComponents(binary[window], connectivity=8)
    on = binary[window].view(bool)
    found = np.bincount(labels[region[window] & on], minlength=n) >= share * np.bincount(labels[on], minlength=n)
    found[0] = False
    if not found.any():
        return None
    out = np.zeros(binary.shape, bool)
    out[window] = found[labels]
    return out


def _page_outline(ink: np.ndarray, outside: np.ndarray) -> np.ndarray | None:
    """bool HxW: the firm ink lying nearly all (PAGE_EDGE_SHARE) within PAGE_EDGE of the region outside the
    page: the page's outline just past the band (the firm ink's components: a faint haze joins the outline
    to the page's texture). None where there is none."""
    near = cv2.distanceTransform((~outside).astype(np.uint8), cv2.DIST_L2, 3) < PAGE_EDGE * min(ink.shape)
    return _components_in((ink > INK_THRESHOLD).astype(np.uint8), near, PAGE_EDGE_SHARE)


def _table_ink(ink: np.ndarray, outside: np.ndarray) -> np.ndarray | None:
    """bool HxW: the ink that runs on from the region outside the page (most of its component lies there):
    a strip of table too narrow for outside_paper along another edge, whose piece beyond the removed region
    would otherwise be left as a solid blob on the page. None where there is none."""
    return _components_in(_binary(ink), outside, TABLE_SHARE)


def writing(ink: np.ndarray, photo: bool, line: bool = False) -> np.ndarray:
    """Step 3: keep_writing, and in a photo once more without the faint ink: what is left of a faint ruled
    line or the paper's texture can hang on to the digit; ink this much fainter than the writing's own is
    dropped and the writing looked for again."""
    ink = keep_writing(ink, photo, line)
    if photo and ink.any():
        firm = float(np.percentile(ink[ink > 0], 90))
        faint = ink < FAINT * firm
        if faint.any():
            ink = keep_writing(np.where(faint, 0, ink), photo, line)
    return ink
