"""Segment step: a cleaned ink map -> the digits in it, left to right, each as its own ink map to frame
exactly like a single digit.

    from engine.preprocess.segment import segment
    seg = segment(ink, classify)  # ink: float32 HxW in [0, 1] (extract_ink(image, line=True).line);
                                  # classify: piece inks -> class probabilities (n, 10), optional
    for piece in seg.pieces:    # left to right, at most MAX_DIGITS
        piece.ink, piece.box    # the digit's own ink (cropped), its (x0, y0, x1, y1) in the ink map
    seg.notes                   # what the reader should be told: digits left out, a blob not split

How, with OpenCV's connected components on the binarised ink, everything measured against the digit
height (the tallest piece of ink: digits on one line share a height, a '1' is tall and thin):
1. specks: a component small against the digit height that touches no digit's columns is a stray tap or
   noise, not a digit; a flat stroke far wider than a digit is an underline;
2. parts of one digit are merged back when their columns overlap (a 5's separate top bar, a 4 or 7
   drawn in two strokes, a broken stroke), unless the union would be wider than one digit (a short part,
   such as a 5's bar, is no digit alone: it is merged while the union is at most MERGE_SHORT heights wide,
   and a flat one also when it starts just beside the digit, or a little further right wholly above its
   top); what is left that is no digit is dropped: far shorter and narrower than the line's digits (a tap),
   short straight strokes only a few times longer than thick (flicks of the pen), or short and wholly above
   or below the line's tallest digit; a hairline far thinner than the digit just beside it is part of that
   digit (no pen wrote it alone: a scratch of the page or the scanner, not a '1');
3. digits that touch are split: in a blob wider than SPLIT_FROM digit heights, the cut candidates are the
   columns where the ink is thinnest (every local minimum of its column profile: where neighbours overlap
   no column is free of ink, so none is ruled out for the ink it crosses). Each is offered straight and, where
   that differs, bent to cross the least ink (a '1' leaning over its neighbour's tail is parted along the gap
   between them, where a straight cut gives a piece of one to the other); every piece between two
   candidates that could be one digit is scored, and a dynamic program picks the split whose pieces score
   best. A piece's score: the model's probability of a class, times how usual the piece's width is for that
   class (MNIST's width/height per class; a piece wider than usual for what it reads may hold two digits),
   less for a piece shorter than the line's digits (a fragment), times the verifier's probability that the
   piece is one whole digit (engine.preprocess.verify: a small CNN trained on MNIST's training digits that
   sees the piece in its place on the line, so it knows a fragment whose ink goes on past a cut, or two
   digits run together, which the reading model may read confidently as one digit). A blob that is all the
   ink in the image, or parts that together are no wider than a digit (a 0 drawn with gaps, a 4 in two
   strokes far apart), are read as one digit unless the digits read clearly better (most images hold a
   single digit); there the verifier, trained on lines, weighs less (it doubts a flat 0 alone). A piece far
   wider than a digit that could not be cut is read whole and a note says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from engine.preprocess.frame import INK_THRESHOLD
from engine.preprocess.verify import view, whole_logodds

MAX_DIGITS = 12         # digits read from one image; more are reported, not read
SPECK = 0.3             # a component whose height and width are both under this x digit height is small
TAP = 0.55              # a group of ink shorter and narrower than this x digit height, alone, is no digit
FLICK = 0.8             # ... nor short straight strokes, each shorter than this x digit height and
FLICK_ASPECT = 4.0      # ... under this many times as long as it is thick: a flick of the pen (a '1' is tall and thin)
FLICK_FILL = 0.75       # (straight: its ink fills this share of its smallest enclosing rectangle)
WIDE = 1.45             # a piece wider than this x digit height holds two digits (MNIST: 99 % of digits are narrower)
SPLIT_FROM = 0.6        # blobs wider than this x digit height may hold two touching digits ('11', '17')
MERGE_MAX = 1.1         # parts are merged into one digit only while the union is at most this x height
BAR_GAP = 0.15          # a flat short part this close beside a digit (x digit height) is its bar,
BAR_ABOVE = 0.35        # ... or this close, to its right and wholly above its top (a 5's bar drawn apart)
MERGE_SHORT = 1.6       # ... or this, for a short part over a digit's columns (a 5's long bar; MNIST 5s: +3.5 sd)
HAIRLINE = 0.4          # a part whose strokes are under this x as thick as its nearer neighbour's is a hairline
HAIRLINE_GAP = 0.25     # ... and joins that neighbour when this close beside it (x digit height)
SHORT = 0.75            # a piece shorter than this x digit height is likely a fragment of a digit ...
SHORT_SLOPE = 8.0       # ... by this log-prior per digit height below it
PIECE_PRIOR = 0.0       # log-prior per piece (tuned on generated numbers and single digits)
LONE_BLOB = 1.5         # log-prior for reading all the ink as one digit (one blob, or parts no wider than WIDE)
ALONE_VERIFY = 0.5      # weight of the verifier's log P(one whole digit) there (trained on lines, it doubts a
                        # flat 0 or a wide 4 alone; 0.25 lost touching numbers, seeds 7 and 8)
FAR_WIDE = 2.0          # ... and no digit is this wide (MNIST: 99.9 % are under 1.7)
WIDE_COST = 10.0        # log-prior against a piece wider than WIDE x digit height (none for a lone blob)
# MNIST's training digits, per class 0-9: mean and standard deviation of log(width / height) of the ink
RATIO = np.array([(-0.102, 0.191), (-0.914, 0.454), (-0.068, 0.212), (-0.227, 0.208), (-0.235, 0.208),
                  (-0.072, 0.252), (-0.317, 0.213), (-0.256, 0.212), (-0.274, 0.217), (-0.386, 0.204)])
RATIO_SPREAD = 2.0      # hand-drawn and photographed digits, and a digit's share of touching ink, vary more
VERIFY = 1.0            # weight of the verifier's log P(one whole digit) in a piece's score (0: not asked)
BEND = 0.25             # a cut between touching digits bends at most this x digit height from its column,
BEND_STEP = 0.01        # ... a column a row, at this cost per column (crossing a pixel of ink costs its ink, <= 1)
BEND_DRIFT = 0.3        # ... and this a row where it lies BEND away from its start (a pixel of ink: <= 1)
PRUNE = -6.0            # pieces the verifier gives log-odds under this are not read (they would cost >= 6)


@dataclass
class Piece:
    ink: np.ndarray                   # float32: the digit's ink only (around its box), zero elsewhere
    box: tuple[int, int, int, int]    # x0, y0, x1, y1 (exclusive) in the ink map's pixels
    origin: tuple[int, int] = (0, 0)  # x, y of `ink`'s top-left corner in the ink map


@dataclass
class Segmentation:
    pieces: list[Piece]
    notes: list[str] = field(default_factory=list)
    found: int = 0                    # digits found before the MAX_DIGITS limit


@dataclass
class _Group:
    labels: list[int]
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    def union(self, other: "_Group") -> "_Group":
        return _Group(self.labels + other.labels, min(self.x0, other.x0), min(self.y0, other.y0),
                      max(self.x1, other.x1), max(self.y1, other.y1))


def _overlap(a: _Group, b: _Group) -> int:
    return min(a.x1, b.x1) - max(a.x0, b.x0)


def _groups(labels_stats: np.ndarray, digit_h: int, stroke=None) -> tuple[list[_Group], int, int]:
    """Components -> digit-sized groups (parts of one digit merged), dropping specks, underlines and stray
    marks. stroke: label -> (length, thickness) of the component's ink if it is one straight stroke, else None."""
    comps = [_Group([i], x, y, x + w, y + h) for i, (x, y, w, h, _) in enumerate(labels_stats) if i > 0]
    small = [g for g in comps if g.w < SPECK * digit_h and g.h < SPECK * digit_h]
    lines = [g for g in comps if g.h < SPECK * digit_h and g.w > 1.5 * digit_h]
    big = sorted((g for g in comps if g not in small and g not in lines), key=lambda g: g.x0)
    # Parts of one digit: merge neighbours (in x order) whose columns overlap by at least half the
    # narrower one, as long as the union stays one digit wide. Repeat until nothing merges.
    merged = True
    while merged:
        merged = False
        for i in range(len(big) - 1):
            a, b = big[i], big[i + 1]
            u = a.union(b)
            ov, part = _overlap(a, b), min(a, b, key=lambda g: g.h)
            short = part.h < 0.6 * digit_h  # a 5's bar, half of a broken 4: never a digit alone
            above = part is b and b.y1 <= a.y0 and ov > -BAR_ABOVE * digit_h  # up and right of it: a 5's bar
            bar = part.w >= 2 * part.h and (ov > -BAR_GAP * digit_h or above)  # a flat stroke just beside it
            wide = u.w / max(digit_h, u.h)  # a 5's bar makes it taller too
            if ov >= 0.5 * min(a.w, b.w) and wide <= MERGE_MAX or short and (ov > 0 or bar) and wide <= MERGE_SHORT:
                big[i:i + 2] = [u]
                merged = True
                break
    # A small component under or over a digit's columns is part of it (a dot-sized broken stroke, a 5's
    # short bar); elsewhere it is a speck.
    specks = 0
    for s in small:
        near = [g for g in big if _overlap(g, s) > 0 and s.y0 < g.y1 + 0.3 * digit_h and s.y1 > g.y0 - 0.3 * digit_h]
        if near:
            g = max(near, key=lambda g: _overlap(g, s))
            big[big.index(g)] = g.union(s)
        else:
            specks += 1
    # What is left both far shorter and far narrower than the line's digits, beside them, is no digit of the
    # number: a stray tap, a comma or a dot (a flat 5 is short but wide; a '1' is narrow but tall).
    line_h = max([digit_h] + [g.h for g in big])  # a digit in parts (a 5 and its bar) is as tall as all of them
    tallest = max(big, key=lambda g: g.h, default=None)
    specks_of = {c.labels[0] for c in small}
    taps = [g for g in big if g.h < TAP * line_h and (g.w < TAP * line_h or g.y0 >= tallest.y1 or g.y1 <= tallest.y0)
            or _flick(g, line_h, stroke, specks_of)]  # a tap; short and wholly above or below the line; flicks
    return sorted((g for g in big if g not in taps), key=lambda g: g.x0), specks + len(taps), len(lines)


def _join_hairlines(groups: list[_Group], labels: np.ndarray, binary: np.ndarray, digit_h: int) -> list[_Group]:
    """Groups left to right, a hairline beside a digit joined to it: a group within HAIRLINE_GAP digit
    heights of its nearer neighbour, whose strokes are far thinner (HAIRLINE) than that neighbour's. One pen
    writes a number, so such a line is no digit of it but a scratch of the page or the scanner (MNIST has
    digits with one at their side), which would otherwise be read as a '1'. A stroke's thickness: twice the
    distance from the paper of its ink's deepest point."""
    if len(groups) < 2:
        return groups
    depth = cv2.distanceTransform(binary, cv2.DIST_L2, 3)
    out = list(groups)
    thick = [2 * float(depth[g.y0:g.y1, g.x0:g.x1][np.isin(labels[g.y0:g.y1, g.x0:g.x1], g.labels)].max())
             for g in out]
    i = 0
    while i < len(out):
        gaps = {j: max(out[j].x0 - out[i].x1, out[i].x0 - out[j].x1) for j in (i - 1, i + 1) if 0 <= j < len(out)}
        j = min(gaps, key=gaps.get, default=None)  # none once all has joined one group
        if j is not None and gaps[j] <= HAIRLINE_GAP * digit_h and thick[i] < HAIRLINE * thick[j]:
            out[j] = out[j].union(out[i])
            del out[i], thick[i]
            continue
        i += 1
    return out


def _flick(g: _Group, line_h: int, stroke, small: set[int]) -> bool:
    """Whether a group is flicks of the pen beside the digits: short straight strokes, each no longer than a
    few times its thickness (specks beside them allowed), not a '1' (as tall as the line's digits and many
    times longer than thick)."""
    if stroke is None or g.h >= FLICK * line_h:
        return False
    strokes = [stroke(i) for i in g.labels if i not in small]
    return bool(strokes) and all(s is not None and s[0] < min(FLICK * line_h, FLICK_ASPECT * s[1]) for s in strokes)


def _straight(labels: np.ndarray, stats: np.ndarray):
    """label -> (length, thickness) of that component's smallest enclosing rectangle when its ink fills it
    (FLICK_FILL: one straight stroke), else None."""
    def stroke(i: int):
        x, y, w, h, area = stats[i]
        pts = cv2.findNonZero((labels[y:y + h, x:x + w] == i).astype(np.uint8))
        (_, _), (a, b), _ = cv2.minAreaRect(pts)
        long, thick = max(a, b) + 1, min(a, b) + 1  # pixel centres -> the pixels' extent
        return (long, thick) if area >= FLICK_FILL * long * thick else None
    return stroke


def _piece(ink: np.ndarray, mask: np.ndarray, left: np.ndarray, right: np.ndarray, at: tuple[int, int]) -> Piece | None:
    """The ink of `mask` between two cuts (per row, the first column of the piece and the first one past it),
    without slivers of a neighbour cut off at the edge. ink and mask are one blob's crop, whose top-left corner
    is at (x, y) = `at` in the ink map."""
    cols = np.arange(mask.shape[1])
    region = ((cols >= left[:, None]) & (cols < right[:, None])).astype(np.uint8)
    part = mask & region
    n, labels, stats, _ = cv2.connectedComponentsWithStats(part, connectivity=8)
    if n <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.isin(labels, np.flatnonzero(areas >= 0.1 * areas.max()) + 1).astype(np.uint8)
    ys, xs = np.nonzero(keep)
    bx0, by0, bx1, by1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    # the crop keeps a 1 px margin: the anti-aliased rim below the threshold belongs to the strokes it
    # surrounds, but not across a cut
    cx0, cy0 = max(bx0 - 1, 0), max(by0 - 1, 0)
    cx1, cy1 = min(bx1 + 1, mask.shape[1]), min(by1 + 1, ink.shape[0])
    rim = (cv2.dilate(keep[cy0:cy1, cx0:cx1], np.ones((3, 3), np.uint8)) & region[cy0:cy1, cx0:cx1]).astype(bool)
    ax, ay = at
    return Piece(np.where(rim, ink[cy0:cy1, cx0:cx1], 0).astype(np.float32),
                 (bx0 + ax, by0 + ay, bx1 + ax, by1 + ay), (cx0 + ax, cy0 + ay))


def _cut_paths(ink: np.ndarray, nodes: list[int], digit_h: int) -> np.ndarray:
    """Where each cut runs: (len(nodes), rows) the first column right of the cut in every row. The blob's ends
    are straight; a cut between them starts as its column and bends (at most BEND digit heights, a column a
    row) to cross as little ink as it can: neighbours that overlap, a slanted '1' beside a '3' whose tail
    runs under it, are parted along the gap between them, where a straight cut would take a piece of one
    into the other (dynamic programming over the rows)."""
    h, w = ink.shape
    paths = np.empty((len(nodes), h), np.int64)
    paths[0], paths[-1] = nodes[0], nodes[-1]
    inner = np.asarray(nodes[1:-1], np.int64)
    if not len(inner):
        return paths
    d = max(1, int(BEND * digit_h))
    offs = np.arange(-d, d + 1)
    cols = inner[:, None] + offs[None]                              # (cuts, 2d+1)
    cost = ink[:, np.clip(cols, 0, w - 1)].astype(np.float64)       # (rows, cuts, 2d+1): the ink each crosses
    cost[:, (cols < 1) | (cols > w - 1)] = np.inf
    cost += BEND_DRIFT * np.abs(offs) / d                            # straight where nothing is in the way
    acc = cost[0].copy()
    came = np.empty(cost.shape, np.int8)                             # -1, 0, +1: the column step from the row above
    inf = np.full((len(inner), 1), np.inf)
    for y in range(1, h):
        options = np.stack([np.hstack([acc[:, 1:], inf]) + BEND_STEP, acc, np.hstack([inf, acc[:, :-1]]) + BEND_STEP])
        step = options.argmin(0)
        came[y] = 1 - step  # options[0] came from the column right of it (+1), options[2] from the left (-1)
        acc = np.take_along_axis(options, step[None], 0)[0] + cost[y]
    at = acc.argmin(1)
    rows = np.arange(len(inner))
    for y in range(h - 1, -1, -1):
        paths[1:-1, y] = inner + offs[at]
        if y:
            at = at + came[y, rows, at]
    return np.maximum.accumulate(paths, axis=0)  # cuts never cross: each piece lies between its two


def _cut_candidates(profile: np.ndarray, digit_h: int) -> list[int]:
    """Columns where a blob may be cut between two digits: local minima of its column profile, not too near
    the blob's ends, the thinnest of any close pair."""
    w = len(profile)
    margin = max(1, int(0.15 * digit_h))
    p = np.convolve(profile.astype(np.float32), np.ones(3, np.float32) / 3, mode="same")
    cands = [x for x in range(margin, w - margin)
             if p[x] <= p[x - 1] and p[x] <= p[x + 1]]
    kept: list[int] = []
    for x in sorted(cands, key=lambda x: profile[x]):
        if all(abs(x - k) >= 0.1 * digit_h for k in kept):
            kept.append(x)
    return sorted(kept)


def _best_split(scores: dict[tuple[int, int], float], n_nodes: int) -> list[tuple[int, int]]:
    """The path from the first cut node to the last whose pieces score highest in total (dynamic programming);
    [] when there is none."""
    best = {0: (0.0, [])}
    for j in range(1, n_nodes):
        options = [(best[i][0] + scores[(i, j)], best[i][1] + [(i, j)])
                   for i in range(j) if i in best and (i, j) in scores]
        if options:
            best[j] = max(options, key=lambda o: o[0])
    return best.get(n_nodes - 1, (0.0, []))[1]  # none when no pieces join the first node to the last


@dataclass
class Blob:
    """One group of ink (a digit, or touching digits) and the ways it may be cut: cut positions (columns of
    the blob, its ends included) and the piece between any two of them that could be one digit."""
    nodes: list[int]
    pieces: dict[tuple[int, int], Piece]


def candidates(ink: np.ndarray, whole_only: bool = False) -> tuple[list[Blob], int]:
    """A cleaned ink map -> its blobs left to right with their candidate pieces, and the digit height.
    whole_only: each blob's cut positions, but only its whole piece (the others are not made)."""
    binary = (ink > INK_THRESHOLD).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        return [], 0
    digit_h = int(stats[1:, cv2.CC_STAT_HEIGHT].max())
    groups, _, _ = _groups(stats[:, :5], digit_h, _straight(labels, stats))
    groups = _join_hairlines(groups, labels, binary, digit_h)
    digit_h = max([digit_h] + [g.h for g in groups])  # a digit in parts (a 5 and its bar) is as tall as all of them
    blobs = []
    for g in groups:
        mask = np.isin(labels[g.y0:g.y1, g.x0:g.x1], g.labels).astype(np.uint8)
        crop, at = ink[g.y0:g.y1, g.x0:g.x1], (g.x0, g.y0)
        nodes = [0, g.w]
        if g.w > SPLIT_FROM * digit_h:  # wide enough for touching digits: where they may be cut apart
            nodes[1:1] = _cut_candidates(mask.sum(0), digit_h)
        paths = np.repeat(np.asarray(nodes, np.int64)[:, None], g.h, 1)  # straight cuts
        if not whole_only and len(nodes) > 2:  # and, where it differs, each inner cut bent around the ink
            bent = _cut_paths(crop, nodes, digit_h)
            cuts = []
            for k, straight in enumerate(paths):
                cuts.append((nodes[k], straight))
                if (bent[k] != straight).any():
                    cuts.append((nodes[k], bent[k]))
            nodes, paths = [x for x, _ in cuts], np.stack([p for _, p in cuts])
        cand = {}
        for i in range(1 if whole_only else len(nodes) - 1):
            for j in range(len(nodes) - 1 if whole_only else i + 1, len(nodes)):
                if j > i + 1 and nodes[j] - nodes[i] > WIDE * digit_h and (i, j) != (0, len(nodes) - 1):
                    continue  # a piece spanning several cuts only while it can be one digit (or is the whole blob)
                piece = _piece(crop, mask, paths[i], paths[j], at)
                if piece is not None:
                    cand[(i, j)] = piece
        if cand:
            blobs.append(Blob(nodes, cand))
    return blobs, digit_h


def choose(blobs: list[Blob], probs: list[np.ndarray | None], digit_h: int,
           whole: list[np.ndarray | None] | None = None) -> tuple[list[Piece], list[str], float]:
    """Each blob's best split (probs: per blob, its pieces' class probabilities in the order of its
    `pieces`, or None where the model was not asked; whole: likewise, the verifier's log-odds that each is one
    whole digit) -> the digits left to right, notes, and the chosen pieces' total score."""
    pieces, notes, total = [], [], 0.0
    for blob, p, z in zip(blobs, probs, whole or [None] * len(blobs)):
        keys = list(blob.pieces)
        scores = dict(zip(keys, _verified_scores([blob.pieces[k] for k in keys], p, digit_h, z)))
        whole = (0, len(blob.nodes) - 1)
        if len(blobs) == 1 and whole in scores:  # all the ink in one blob: most often a single digit, maybe a
            i = keys.index(whole)  # wide one
            scores[whole] = _lone_whole(blob, None if p is None else p[i:i + 1], digit_h, None if z is None else z[i:i + 1])
        for k in _best_split(scores, len(blob.nodes)):
            piece = blob.pieces[k]
            total += scores[k]
            notes += _too_wide(piece, digit_h, WIDE if len(blobs) > 1 else FAR_WIDE)  # a lone blob may be a wide digit
            pieces.append(piece)
    return pieces, notes, total


def _too_wide(piece: Piece, digit_h: int, limit: float) -> list[str]:
    """The note for a piece read as one digit though wider than `limit` digit heights (none if narrower)."""
    if _width(piece) <= limit * digit_h:
        return []
    return [f"a blob of ink {_width(piece) / digit_h:.1f} digit heights wide could not be split into digits; "
            f"it was read as one digit"]


def _lone_whole(blob: Blob, p: np.ndarray | None, digit_h: int, z: np.ndarray | None) -> float:
    """The score of a lone blob (all the ink in the image) read whole, as choose() scores it."""
    whole = blob.pieces[(0, len(blob.nodes) - 1)]
    return float(_verified_scores([whole], p, digit_h, z, ALONE_VERIFY)[0] + LONE_BLOB
                 + WIDE_COST * (_width(whole) > WIDE * digit_h))


def _verified_scores(pieces: list[Piece], probs: np.ndarray | None, digit_h: int,
                     z: np.ndarray | None, weight: float = VERIFY) -> np.ndarray:
    """_scores, plus the verifier's log P(one whole digit) (from its log-odds z) where it was asked."""
    s = _scores(pieces, probs, digit_h)
    return s if z is None else s - weight * np.logaddexp(0.0, -z)


def _all_ink(blobs: list[Blob]) -> Piece:
    """All the blobs' ink as one piece (each blob whole)."""
    parts = [b.pieces[(0, len(b.nodes) - 1)] for b in blobs]
    ox, oy = min(p.origin[0] for p in parts), min(p.origin[1] for p in parts)
    ink = np.zeros((max(p.origin[1] + p.ink.shape[0] for p in parts) - oy,
                    max(p.origin[0] + p.ink.shape[1] for p in parts) - ox), np.float32)
    for p in parts:
        h, w = p.ink.shape
        window = ink[p.origin[1] - oy:p.origin[1] - oy + h, p.origin[0] - ox:p.origin[0] - ox + w]
        np.maximum(window, p.ink, out=window)
    box = (min(p.box[0] for p in parts), min(p.box[1] for p in parts),
           max(p.box[2] for p in parts), max(p.box[3] for p in parts))
    return Piece(ink, box, (ox, oy))


def _width(piece: Piece) -> int:
    return piece.box[2] - piece.box[0]


def _scores(pieces: list[Piece], probs: np.ndarray | None, digit_h: int) -> np.ndarray:
    """How likely each candidate piece is one whole digit, in log units: the model's probability of a class
    times how usual a piece this wide for its height is for that class (MNIST's digits: RATIO; only wider
    than usual counts against it, as it may hold two digits: a slim '8' or a '1' is a digit), the best
    class's; a piece shorter than the line's digits is likely a fragment; and each piece costs PIECE_PRIOR."""
    boxes = np.array([p.box for p in pieces], np.float64)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    if probs is None:  # no model: every piece an equally good digit, the width alone decides
        probs = np.full((len(pieces), len(RATIO)), 1.0 / len(RATIO))
    mu, sd = RATIO[:, 0], RATIO[:, 1] * RATIO_SPREAD
    z = (np.log(w / h)[:, None] - mu[None]) / sd[None]
    fit = np.log(np.maximum(probs, 1e-6)) - 0.5 * np.maximum(z, 0.0) ** 2
    score = fit.max(1) + PIECE_PRIOR
    score -= SHORT_SLOPE * np.maximum(0.0, SHORT - h / digit_h)
    score -= WIDE_COST * (w > WIDE * digit_h)  # wider than a digit in a number: only where no cut is possible
    return score


def _per_blob(blobs: list[Blob], split: list[Blob], flat) -> list[np.ndarray | None]:
    """Values of the pieces of the `split` blobs, in one array, -> per blob, its pieces' rows (None for a blob
    not in `split`, or when there are no values)."""
    rows = iter(np.asarray(flat, np.float64)) if flat is not None else None
    return [np.stack([next(rows) for _ in b.pieces]) if rows is not None and any(b is s for s in split) else None
            for b in blobs]


def segment(ink: np.ndarray, classify=None, max_digits: int = MAX_DIGITS) -> Segmentation:
    """A cleaned ink map -> its digits left to right (see the module docstring).

    classify: optional, list of piece inks -> their class probabilities (n, 10), the digits 0-9 in order.
    Where a blob could be one digit or several, the split whose pieces the model reads most confidently, at
    widths usual for what it reads, wins (a wrong cut leaves a fragment the model is unsure of or an odd
    shape); without it, the pieces whose widths are the most usual for a digit. Either way the verifier
    (engine.preprocess.verify) scores every candidate piece, and those it rules out clearly are not read.
    """
    blobs, digit_h = candidates(ink, whole_only=True)
    if len(blobs) == 1 and len(blobs[0].nodes) > 2 and classify is not None and PIECE_PRIOR <= 0:
        # All the ink is one blob that may be cut. Every piece scores at most 0, so a split of two or more scores
        # at most 0 too: when the whole scores above 0 it is chosen, and the other pieces need not be made or
        # read (most drawings are one digit, read confidently).
        one = blobs[0].pieces[(0, len(blobs[0].nodes) - 1)]
        z = whole_logodds(view(ink, one.ink, one.origin, one.box, digit_h)[None]) if VERIFY else None
        if _lone_whole(blobs[0], classify([one.ink]), digit_h, z) > 0:
            return Segmentation([one], _too_wide(one, digit_h, FAR_WIDE), 1)
    if any(len(b.nodes) > 2 for b in blobs):
        blobs, digit_h = candidates(ink)
    # Parts that together are no wider than one digit may be one digit the grouping left in parts (a 0 or an
    # 8 drawn with a gap, a 4 in two strokes): all the ink is also scored as one digit, against every blob's
    # own reading.
    one = _all_ink(blobs) if len(blobs) > 1 and classify is not None else None
    if one is not None and _width(one) > WIDE * digit_h:
        one = None
    scored = [b for b in blobs if len(b.pieces) > 1 or one is not None]  # blobs whose pieces are scored
    whole, z_one = [None] * len(blobs), None
    if scored and VERIFY:
        views = [view(ink, p.ink, p.origin, p.box, digit_h) for b in scored for p in b.pieces.values()]
        z = whole_logodds(np.stack(views + ([view(ink, one.ink, one.origin, one.box, digit_h)] if one else [])))
        z, z_one = (z[:-1], z[-1:]) if one else (z, None)
        for k, (b, zb) in enumerate(zip(blobs, _per_blob(blobs, scored, z))):
            if zb is not None:  # the model reads only pieces that may be a whole digit (the whole blob always
                # is one: a split is never forced)
                last = (0, len(b.nodes) - 1)
                keys = list(b.pieces)
                # and the split the verifier likes best, so the pieces left still join up across the blob (a
                # wide blob whose every cut leaves one doubtful piece is no one digit)
                likes = {key: -np.logaddexp(0.0, -zb[i]) for i, key in enumerate(keys) if key != last}
                kept = {keys.index(key) for key in _best_split(likes, len(b.nodes))}
                keep = [i for i, key in enumerate(keys) if zb[i] > PRUNE or key == last or i in kept]
                blobs[k] = Blob(b.nodes, {key: p for i, (key, p) in enumerate(b.pieces.items()) if i in keep})
                whole[k] = zb[keep]
        scored = [b for b in blobs if len(b.pieces) > 1 or one is not None]
    pieces = [p for b in scored for p in b.pieces.values()] + ([one] if one else [])
    probs = classify([p.ink for p in pieces]) if pieces and classify is not None else None
    p_one = probs[-1:] if one else None
    probs = _per_blob(blobs, scored, probs[:-1] if one else probs)
    pieces, notes, total = choose(blobs, probs, digit_h, whole)
    if one is not None and _verified_scores([one], p_one, digit_h, z_one, ALONE_VERIFY)[0] + LONE_BLOB > total:
        pieces, notes = [one], []
    found = len(pieces)
    if found > max_digits:
        notes.append(f"{found} digits found: read the first {max_digits} (the most one image may hold)")
        pieces = pieces[:max_digits]
    return Segmentation(pieces, notes, found)
