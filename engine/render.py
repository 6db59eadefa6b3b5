"""Re-render real 28x28 test digits the way people hand them to the app, to measure preprocessing.

    from engine.render import render
    value = render(digit_u8, "sketch", rng)   # a Gradio sketchpad value (dict of RGBA layers)
    img = render(digit_u8, "jpeg", rng)       # PIL image: dark ink on light paper, JPEG-compressed
    img = render(digit_u8, "inverted", rng)   # PIL image: light ink on dark, large, anywhere

Kinds: "sketch" (big transparent canvas, the digit's centre line drawn with a round brush of random
width, random place and size), "jpeg" (grey paper, dark ink, noise, JPEG), "inverted" (light on dark, PNG-like),
and what people hand over from real life:
"strays" (a sketch plus one to three stray taps or short flicks beside the digit), "fat" (a small phone canvas
drawn with a fat finger), "pencil" (faint grey pencil on paper under uneven light: a gradient, a soft shadow,
graphite grain, blur, JPEG), "ruled" (ballpoint in blue, black, red or green on ruled notebook paper with a margin
line, lines of any spacing and colour, slightly tilted), "photo" (a phone photo, 1600x1200 or 1200x1600: the
page does not fill the frame, a table shows along one or two edges, a shadow falls over the page, the digit is
small), "squared" (ballpoint on squared paper: level and plumb lines, some pages graph paper with heavier
lines every fifth, some a grid of dots; the digit one and a half to three and a half squares tall), "form" (a
digit written in one of a form's printed boxes, a row of one to five, dark or light, some sharing walls),
"cropped" (a scan or screenshot cut to the digit's ink: no paper around it, the ink touching the image's edge
on every side; its own size to eight times it, ballpoint of any colour or MNIST's own ink, a quarter light on
dark, PNG or JPEG), "phone" (a photo as a phone takes it: 4000x3000 or 3000x4000, 12 megapixels, otherwise
like "photo", its blur as many pixels wider; the digit 3 to 25 % of the height, down to a digit a ruled line
high on a whole page), "desk" (the "photo" kind on a light desk: its surface 0.5 to 0.85 of white in each of
red, green and blue, where the photo's table is 0.05 to 0.5, as mottled), "note" (a photo of a sticky note, yellow,
pink, green, blue or white, on a desk of any shade that fills most of the frame).

Whole numbers: render_number(digits_u8, kind, rng) writes several real digits side by side, "apart" or
"touching" (sketchpad values), "photo" (dark ink on photographed paper) or "form" (a digit in each of a form's
boxes), for scripts/eval_numbers.py.
"""
from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.data import thin

KINDS = ("sketch", "jpeg", "inverted", "strays", "fat", "pencil", "ruled", "photo", "squared", "form", "cropped",
         "phone", "desk", "note")


def _upscale(digit_u8: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(digit_u8.astype(np.float32) / 255.0)[None, None]
    return F.interpolate(t, size=(size, size), mode="bicubic", align_corners=False)[0, 0].clamp(0, 1).numpy()


def skeleton(digit_u8: np.ndarray, scale: int = 4) -> np.ndarray:
    """Zhang-Suen thinning of the digit, upscaled `scale` times first: its one-pixel-wide centre line.

    Thinning at 28x28 eats the ends of bold strokes and the small holes of bold loops (a thick 3 loses its
    bars, a 6 its loop); at 4x the centre line keeps the shape a person would trace.
    """
    big = torch.from_numpy(_upscale(digit_u8, 28 * scale) > 0.5)[None, None]
    return thin(big)[0, 0].numpy().astype(np.uint8)


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


def _sketch_value(alpha: np.ndarray) -> dict:
    """An ink map (float HxW in [0, 1]) -> the value Gradio's sketchpad sends: a black brush on a transparent layer."""
    H, W = alpha.shape
    a = (np.clip(alpha, 0, 1) * 255).astype(np.uint8)
    layer = np.zeros((H, W, 4), np.uint8)
    layer[..., 3] = a
    background = np.full((H, W, 4), 255, np.uint8)
    composite = background.copy()
    composite[a > 0, :3] = 0
    return {"background": background, "layers": [layer], "composite": composite}


def _jpeg(rgb: np.ndarray, quality: int) -> Image.Image:
    buf = io.BytesIO()
    Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)).convert("RGB").save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    import cv2
    return a if sigma <= 0.05 else cv2.GaussianBlur(np.ascontiguousarray(a, np.float32), (0, 0), sigma)


def _smooth_noise(H: int, W: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a cells x cells random grid upscaled bicubically."""
    t = torch.from_numpy(rng.normal(0, 1, (1, 1, cells, cells)).astype(np.float32))
    return F.interpolate(t, size=(H, W), mode="bicubic", align_corners=False)[0, 0].numpy().clip(-2.5, 2.5) / 2


def _light(H: int, W: int, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Uneven light over a page, multiplicative in (0, 1]: a gradient, a soft shadow across it, blotches."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    g = (np.cos(angle) * xx / W + np.sin(angle) * yy / H)
    g = (g - g.min()) / max(float(g.max() - g.min()), 1e-6)
    light = 1 - strength * rng.uniform(0.3, 1.0) * g
    if rng.random() < 0.7:  # a shadow (a hand, a phone) with a soft edge crossing the page
        a2 = rng.uniform(0, 2 * np.pi)
        d = np.cos(a2) * (xx - rng.uniform(0.2, 0.8) * W) + np.sin(a2) * (yy - rng.uniform(0.2, 0.8) * H)
        edge = rng.uniform(0.01, 0.15) * max(H, W)
        light = light * (1 - strength * rng.uniform(0.3, 0.8) / (1 + np.exp(-d / edge)))
    light = light * (1 + 0.15 * strength * _smooth_noise(H, W, 4, rng))
    return np.clip(light, 0.15, 1).astype(np.float32)


def _pen_glyph(digit_u8: np.ndarray, size: int, rng: np.random.Generator, pen_px: float | None = None) -> np.ndarray:
    """The digit at size x size as a person writes it: traced with a pen of pen_px, or (pen_px None) the MNIST
    digit's own ink upscaled (its varying stroke weight)."""
    if pen_px is None:
        return _upscale(digit_u8, size)
    return _brush_strokes(digit_u8, size, brush_px=max(1.0, pen_px))


def _compose(page: np.ndarray, ink: np.ndarray, pen_rgb, light: np.ndarray) -> np.ndarray:
    """Paper (HxWx3) with ink (HxW alpha) of colour pen_rgb, all under the light (HxW)."""
    a = np.clip(ink, 0, 1)[..., None]
    return (page * (1 - a) + np.asarray(pen_rgb, np.float32) * a) * light[..., None]


def _finish(rgb: np.ndarray, rng: np.random.Generator, blur: tuple, noise: tuple, quality: tuple) -> Image.Image:
    """Camera: blur, sensor noise, JPEG."""
    rgb = _blur(rgb, rng.uniform(*blur))
    rgb = rgb + rng.normal(0, rng.uniform(*noise), rgb.shape[:2])[..., None]
    return _jpeg(rgb, int(rng.integers(*quality)))


def _strays(H: int, W: int, box: tuple[int, int, int, int], brush: float, rng: np.random.Generator) -> np.ndarray:
    """One to three stray taps or short flicks beside the digit's box (y0, x0, y1, x1), clear of it."""
    from PIL import ImageDraw
    y0, x0, y1, x1 = box
    gap = 0.12 * max(y1 - y0, x1 - x0) + brush
    img = Image.new("L", (W, H), 0)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        for _try in range(50):
            cx, cy = rng.uniform(brush, W - brush), rng.uniform(brush, H - brush)
            if not (y0 - gap < cy < y1 + gap and x0 - gap < cx < x1 + gap):
                break
        r = brush / 2 * rng.uniform(0.8, 1.6)
        if rng.random() < 0.6:  # a tap
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        else:  # a short flick
            a = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(1, 3) * brush
            draw.line([cx, cy, cx + length * np.cos(a), cy + length * np.sin(a)], fill=255, width=max(1, round(2 * r)))
    return np.asarray(img, np.float32) / 255.0


def _sketch(digit_u8, rng, canvas: tuple[int, int], size_frac: tuple[float, float], brush_of_size, strays: bool):
    H, W = int(rng.integers(*canvas)), int(rng.integers(*canvas))
    size = int(rng.integers(int(size_frac[0] * min(H, W)), int(size_frac[1] * min(H, W)) + 1))
    brush = brush_of_size(size)
    glyph = _brush_strokes(digit_u8, size, brush_px=brush)
    H2, W2 = max(H, size), max(W, size)
    y, x = int(rng.integers(0, H2 - size + 1)), int(rng.integers(0, W2 - size + 1))
    alpha = np.zeros((H2, W2), np.float32)
    alpha[y:y + size, x:x + size] = glyph
    if strays:
        ys, xs = np.nonzero(glyph > 0.5)
        alpha = np.maximum(alpha, _strays(H2, W2, (y + ys.min(), x + xs.min(), y + ys.max(), x + xs.max()), brush, rng))
    return _sketch_value(alpha)


INKS = {"blue": (0.08, 0.15, 0.55), "black": (0.08, 0.08, 0.1), "red": (0.65, 0.08, 0.1),
        "green": (0.05, 0.4, 0.2), "violet": (0.3, 0.1, 0.5)}
RULE_COLOURS = ((0.55, 0.7, 0.9), (0.65, 0.65, 0.68), (0.6, 0.75, 0.85), (0.7, 0.6, 0.85), (0.45, 0.6, 0.85))


def _lined_page(rng: np.random.Generator, spacing: tuple[float, float]):
    """A notebook page to rule: -> (H, W, line spacing, the paper (HxWx3, white to cream, a little grey), its
    rows and columns (yy, xx), the lines' tilt (a slope), their colour)."""
    H, W = int(rng.integers(400, 1400)), int(rng.integers(400, 1400))
    step = float(rng.uniform(*spacing))
    page = np.ones((H, W, 3), np.float32) * np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.85, 1.0)], np.float32)
    page *= rng.uniform(0.85, 1.0)
    yy = np.arange(H, dtype=np.float32)[:, None]
    xx = np.arange(W, dtype=np.float32)[None, :]
    tilt = np.tan(np.radians(rng.uniform(-2, 2)))
    rule = np.asarray(RULE_COLOURS[rng.integers(len(RULE_COLOURS))], np.float32) * rng.uniform(0.85, 1.1)
    return H, W, step, page, yy, xx, tilt, rule


def _rules(d: np.ndarray, spacing: float, thick: float) -> np.ndarray:
    """Ruled lines thick pixels wide every spacing pixels, from d: each pixel's distance past the last line."""
    return np.clip(thick / 2 + 0.5 - np.minimum(d, spacing - d), 0, 1)


def _ruled_in(page: np.ndarray, lines: np.ndarray, colour) -> np.ndarray:
    """Lines (HxW coverage) printed on the page in a colour (never lighter than the page)."""
    return page * (1 - lines[..., None]) + np.minimum(page, colour) * lines[..., None]


def _corner(centre: tuple[float, float], size: int, H: int, W: int) -> tuple[int, int]:
    """The top left corner (x, y) of a size x size glyph centred on `centre` (x, y), as far as an H x W page
    allows."""
    return (int(np.clip(round(centre[0] - size / 2), 0, W - size)),
            int(np.clip(round(centre[1] - size / 2), 0, H - size)))


def _written(digit_u8, page: np.ndarray, size: int, rng, left: float = 0,
             centre: tuple[float, float] | None = None) -> Image.Image:
    """The digit written size px tall in ballpoint of a random colour, anywhere on the page right of `left`
    (or centred on `centre`, x and y, as far as the page allows), under uneven light, photographed."""
    H, W = page.shape[:2]
    pen = rng.uniform(0.035, 0.09) * size if rng.random() < 0.8 else None
    glyph = _pen_glyph(digit_u8, size, rng, pen)
    if centre is None:
        y = int(rng.integers(0, H - size + 1))
        x = int(rng.integers(int(min(left, W - size)), W - size + 1))
    else:
        x, y = _corner(centre, size, H, W)
    ink = np.zeros((H, W), np.float32)
    ink[y:y + size, x:x + size] = glyph * rng.uniform(0.7, 1.0)
    colour = INKS[list(INKS)[rng.integers(len(INKS))]]
    rgb = _compose(page, ink, colour, _light(H, W, rng, rng.uniform(0, 0.35)))
    return _finish(rgb, rng, (0, 1.2), (0.005, 0.03), (55, 96))


def _ruled(digit_u8, rng) -> Image.Image:
    H, W, spacing, page, yy, xx, tilt, rule = _lined_page(rng, (16, 60))
    thick = rng.uniform(0.8, 3.0)
    phase = rng.uniform(0, spacing)
    lines = _rules((yy - tilt * xx - phase) % spacing, spacing, thick)  # level lines
    margin_x = rng.uniform(0.06, 0.3) * W
    mthick = rng.uniform(0.8, 3.0)
    margin = np.clip(mthick / 2 + 0.5 - np.abs(xx + tilt * yy - margin_x), 0, 1) * np.ones((H, 1), np.float32)
    page = _ruled_in(page, lines, rule)
    mcol = np.array([0.85, rng.uniform(0.2, 0.5), rng.uniform(0.3, 0.55)], np.float32)
    page = _ruled_in(page, margin, mcol)
    size = int(min(spacing * rng.uniform(1.0, 2.6), 0.8 * min(H, W - margin_x)))
    return _written(digit_u8, page, size, rng, left=margin_x + 4)


def _squared(digit_u8, rng) -> Image.Image:
    """Squared paper (a maths exercise book): level and plumb lines at one spacing; on a fifth of the pages
    every fifth line heavier (graph paper), on a quarter a grid of dots instead (dot paper)."""
    H, W, spacing, page, yy, xx, tilt, rule = _lined_page(rng, (14, 45))
    thick = rng.uniform(0.8, 2.5)
    down = (yy - tilt * xx - rng.uniform(0, spacing)) % (5 * spacing)  # past the last heavy line
    across = (xx + tilt * yy - rng.uniform(0, spacing)) % (5 * spacing)
    level, plumb = _rules(down % spacing, spacing, thick), _rules(across % spacing, spacing, thick)
    style = rng.random()
    if style < 0.25:
        lines = np.minimum(3 * level * plumb, 1)
    else:
        lines = np.maximum(level, plumb)
        if style >= 0.8:
            heavy = 2 * thick
            lines = np.maximum(lines, np.maximum(_rules(down, 5 * spacing, heavy), _rules(across, 5 * spacing, heavy)))
    size = int(min(spacing * rng.uniform(1.5, 3.5), 0.8 * min(H, W)))
    return _written(digit_u8, _ruled_in(page, lines, rule), size, rng)


FORM_COLOURS = ((0.1, 0.1, 0.1), (0.35, 0.35, 0.4), (0.2, 0.3, 0.6), (0.8, 0.3, 0.3), (0.95, 0.6, 0.45))


def _form_page(rng, n: int | None = None):
    """A form: a row of printed boxes (n, or one to five) on a page; on two forms in five a comb, the boxes
    sharing their walls; dark or in a light colour (a form printed for machine reading), slightly tilted.
    -> (the page HxWx3, each box's centre (x, y), the boxes' size)."""
    import cv2
    H, W, _, page, _, _, tilt, rule = _lined_page(rng, (1, 2))
    cell = rng.uniform(0.15, 0.45) * min(H, W)
    gap = 0.0 if rng.random() < 0.4 else rng.uniform(0.05, 0.5) * cell
    margin = 5 + 0.04 * max(H, W)  # the row, turned by its tilt, stays on the page
    if n is None:
        n = max(1, min(int(rng.integers(1, 6)), int((W - 2 * margin + gap) // (cell + gap))))
    else:  # all n boxes on the page: smaller boxes (and gaps) where they would not fit
        spread = gap / cell
        cell = min(cell, (W - 2 * margin) / (n + (n - 1) * spread))
        gap = spread * cell
    x0 = rng.uniform(margin, max(margin + 1, W - margin - n * cell - (n - 1) * gap))
    y0 = rng.uniform(margin, max(margin + 1, H - margin - cell))
    a = np.arctan(tilt)
    cx, cy = x0 + (n * cell + (n - 1) * gap) / 2, y0 + cell / 2

    def turned(x: float, y: float) -> tuple[float, float]:
        return (cx + (x - cx) * np.cos(a) - (y - cy) * np.sin(a), cy + (x - cx) * np.sin(a) + (y - cy) * np.cos(a))

    walls = np.zeros((H, W), np.uint8)
    thick = int(rng.integers(1, 4))
    for k in range(n):
        x = x0 + k * (cell + gap)
        corners = np.array([turned(*p) for p in ((x, y0), (x + cell, y0), (x + cell, y0 + cell), (x, y0 + cell))])
        cv2.polylines(walls, [np.round(corners * 16).astype(np.int32)], True, 255, thick, cv2.LINE_AA, shift=4)
    colour = FORM_COLOURS[rng.integers(len(FORM_COLOURS))] if rng.random() < 0.6 else rule
    centres = [turned(x0 + k * (cell + gap) + cell / 2, y0 + cell / 2) for k in range(n)]
    return _ruled_in(page, walls.astype(np.float32) / 255, colour), centres, cell


def _form(digit_u8, rng) -> Image.Image:
    """The digit written in one of a form's boxes (_form_page), 60-100 % of its height, a little off its
    centre."""
    page, centres, cell = _form_page(rng)
    x, y = centres[int(rng.integers(len(centres)))]
    size = int(cell * rng.uniform(0.6, 1.0))
    dx, dy = rng.uniform(-0.1, 0.1, 2) * cell
    return _written(digit_u8, page, size, rng, centre=(x + dx, y + dy))


def _pencil(digit_u8, rng) -> Image.Image:
    H, W = int(rng.integers(300, 1201)), int(rng.integers(300, 1201))
    size = int(rng.integers(int(0.25 * min(H, W)), int(0.9 * min(H, W)) + 1))
    pen = rng.uniform(0.03, 0.1) * size if rng.random() < 0.7 else None
    glyph = _pen_glyph(digit_u8, size, rng, pen)
    ink = _place(glyph, (H, W), rng)
    grain = np.clip(1 - 0.5 * rng.random((H, W)).astype(np.float32) * rng.uniform(0, 1), 0, 1)
    depth = rng.uniform(0.12, 0.45)  # how much light the graphite takes away: faint to firm
    paper = rng.uniform(0.8, 1.0)
    page = np.ones((H, W, 3), np.float32) * paper
    grey = paper * (1 - depth)  # of the paper's own light: graphite never makes a grey page lighter
    rgb = _compose(page, ink * grain, (grey, grey, grey * 1.02), _light(H, W, rng, rng.uniform(0.2, 0.6)))
    return _finish(rgb, rng, (0, 1.5), (0.005, 0.03), (50, 96))


DARK_TABLE = ((0.1, 0.5), (0.08, 0.4), (0.05, 0.35))  # a table's red, green and blue: dark, warm
LIGHT_DESK = ((0.5, 0.85),) * 3                       # a light desk's: wood, stone, laminate, fabric, any hue


def _surface(H: int, W: int, rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    """A table or desk of colour rgb filling the frame, mottled."""
    tex = 1 + rng.uniform(0.05, 0.3) * _smooth_noise(H, W, int(rng.integers(8, 40)), rng)
    return rgb * tex[..., None]


def _page_mask(corners: list, centre: tuple[float, float], a: float, H: int, W: int, rng
               ) -> tuple[np.ndarray, np.ndarray]:
    """The page's HxW masks, (bool: inside it, float32 in [0, 1]: its edge softened by the camera): its corners
    (offsets from its centre) turned by a radians about the centre."""
    from PIL import ImageDraw
    cx, cy = centre
    mask = Image.new("L", (W, H), 0)
    ImageDraw.Draw(mask).polygon([(cx + x * np.cos(a) - y * np.sin(a), cy + x * np.sin(a) + y * np.cos(a))
                                  for x, y in corners], fill=255)
    return np.asarray(mask) > 0, _blur(np.asarray(mask, np.float32) / 255, rng.uniform(0.5, 2))


def _photo(digit_u8, rng, frame: tuple[int, int] = (1200, 1600), size_of_height: tuple[float, float] = (0.08, 0.25),
           table_rgb: tuple = DARK_TABLE) -> Image.Image:
    """A phone photo of the digit on a page (frame: its height and width, landscape; portrait at random), the
    digit size_of_height of the frame's height tall, the table's colour drawn from table_rgb, mottled."""
    H, W = frame if rng.random() < 0.6 else frame[::-1]
    blur = frame[0] / 1200  # the camera's blur, in pixels, grows with them
    rgb = _surface(H, W, rng, np.asarray([rng.uniform(*levels) for levels in table_rgb], np.float32))
    # The page: the frame minus a strip of table on one or two sides (an uncut side runs on past the frame),
    # slightly rotated.
    edges = [-0.3 * W, -0.3 * H, 1.3 * W, 1.3 * H]  # left, top, right, bottom
    for side in rng.choice(4, size=int(rng.integers(1, 3)), replace=False):
        cut = rng.uniform(0.05, 0.3)
        edges[side] = cut * (W, H)[side % 2] if side < 2 else (1 - cut) * (W, H)[side % 2]
    left, top, right, bottom = edges
    cx, cy = (max(left, 0) + min(right, W)) / 2, (max(top, 0) + min(bottom, H)) / 2
    corners = [(x - cx, y - cy) for x, y in ((left, top), (right, top), (right, bottom), (left, bottom))]
    inner, m = _page_mask(corners, (cx, cy), np.radians(rng.uniform(-6, 6)), H, W, rng)
    paper = np.ones(3, np.float32) * rng.uniform(0.8, 1.0)
    rgb = rgb * (1 - m[..., None]) + paper * m[..., None]
    # The digit: small, on the page, away from its edges.
    size = int(rng.uniform(*size_of_height) * H)
    pen = rng.uniform(0.04, 0.1) * size if rng.random() < 0.7 else None
    glyph = _pen_glyph(digit_u8, size, rng, pen)
    for _ in range(200):
        y, x = int(rng.integers(0, H - size)), int(rng.integers(0, W - size))
        if inner[y, x] and inner[y + size - 1, x + size - 1] and inner[y, x + size - 1] and inner[y + size - 1, x]:
            break
    ink = np.zeros((H, W), np.float32)
    ink[y:y + size, x:x + size] = glyph
    colour = INKS[("black", "blue")[rng.integers(2)]]
    rgb = _compose(rgb, ink * m, colour, _light(H, W, rng, rng.uniform(0.2, 0.6)))
    return _finish(rgb, rng, (0.3 * blur, 2.0 * blur), (0.005, 0.03), (65, 96))


NOTES = ((0.98, 0.92, 0.45), (0.98, 0.7, 0.8), (0.6, 0.9, 0.7), (0.6, 0.8, 0.98), (0.98, 0.98, 0.95))  # sticky notes


def _note(digit_u8, rng) -> Image.Image:
    """A phone photo of the digit on a sticky note (yellow, pink, green, blue or white) on a desk that fills
    most of the frame: the note 30 to 60 % of the frame's shorter side, turned up to 15 degrees, the digit a
    half to four fifths of it."""
    H, W = (1200, 1600) if rng.random() < 0.6 else (1600, 1200)
    rgb = _surface(H, W, rng, rng.uniform(0.05, 0.85) * rng.uniform(0.75, 1.1, 3).astype(np.float32))  # any shade
    side = rng.uniform(0.3, 0.6) * min(H, W)
    cx, cy = rng.uniform(side / 2, W - side / 2), rng.uniform(side / 2, H - side / 2)
    corners = [(x * side / 2, y * side / 2) for x, y in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    _, m = _page_mask(corners, (cx, cy), np.radians(rng.uniform(-15, 15)), H, W, rng)
    note = np.asarray(NOTES[rng.integers(len(NOTES))], np.float32)
    rgb = rgb * (1 - m[..., None]) + note * m[..., None]
    size = int(rng.uniform(0.5, 0.8) * side)
    pen = rng.uniform(0.04, 0.12) * size if rng.random() < 0.7 else None
    glyph = _pen_glyph(digit_u8, size, rng, pen)
    y, x = int(cy - size / 2), int(cx - size / 2)
    ink = np.zeros((H, W), np.float32)
    ink[y:y + size, x:x + size] = glyph
    colour = INKS[("black", "blue")[rng.integers(2)]]
    rgb = _compose(rgb, ink * m, colour, _light(H, W, rng, rng.uniform(0.1, 0.4)))
    return _finish(rgb, rng, (0.3, 2.0), (0.005, 0.03), (65, 96))


def _cropped(digit_u8, rng) -> Image.Image:
    size = int(rng.integers(28, 225))
    pen = rng.uniform(0.035, 0.09) * size if rng.random() < 0.5 else None
    ink = _pen_glyph(digit_u8, size, rng, pen)
    ys, xs = np.nonzero(ink > rng.uniform(0.05, 0.3))  # where the person cut: the ink's visible edge
    ink = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    if rng.random() < 0.25:  # light on dark: a screenshot of a dark canvas
        paper, colour = np.full(3, rng.uniform(0, 0.25), np.float32), np.full(3, rng.uniform(0.75, 1), np.float32)
    else:
        paper = np.full(3, rng.uniform(0.8, 1), np.float32) - rng.uniform(0, 0.05, 3).astype(np.float32)
        colour = INKS[list(INKS)[rng.integers(len(INKS))]]
    rgb = _compose(paper * np.ones((*ink.shape, 3), np.float32), ink, colour, np.ones(ink.shape, np.float32))
    rgb = rgb + rng.normal(0, rng.uniform(0, 0.02), ink.shape)[..., None]
    if rng.random() < 0.5:
        return _jpeg(rgb, int(rng.integers(60, 96)))
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))


def render(digit_u8: np.ndarray, kind: str, rng: np.random.Generator):
    if kind == "sketch":
        return _sketch(digit_u8, rng, (400, 801), (0.35, 0.95), lambda size: float(rng.uniform(4, 14)), strays=False)
    if kind == "strays":
        return _sketch(digit_u8, rng, (300, 801), (0.3, 0.8), lambda size: float(rng.uniform(4, 30)), strays=True)
    if kind == "fat":  # a phone-sized canvas and a finger: the brush is a tenth to a sixth of the digit
        return _sketch(digit_u8, rng, (250, 451), (0.5, 0.95), lambda size: size * float(rng.uniform(0.1, 0.17)),
                       strays=False)
    if kind == "pencil":
        return _pencil(digit_u8, rng)
    if kind == "ruled":
        return _ruled(digit_u8, rng)
    if kind == "photo":
        return _photo(digit_u8, rng)
    if kind == "squared":
        return _squared(digit_u8, rng)
    if kind == "form":
        return _form(digit_u8, rng)
    if kind == "cropped":
        return _cropped(digit_u8, rng)
    if kind == "phone":
        return _photo(digit_u8, rng, (3000, 4000), (0.03, 0.25))
    if kind == "desk":
        return _photo(digit_u8, rng, table_rgb=LIGHT_DESK)
    if kind == "note":
        return _note(digit_u8, rng)
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


# ----------------------------------------------------------------------------------------------------
# Whole numbers: several real test digits on one line

NUMBER_KINDS = ("apart", "touching", "photo", "form")


def _glyph(digit_u8: np.ndarray, height: int, threshold: float) -> np.ndarray:
    """The digit's own strokes at `height` px per 28 px cell, cropped to its ink, as a pen-like alpha (solid
    inside, anti-aliased edge; the threshold moves the edge, i.e. the stroke weight)."""
    a = _upscale(digit_u8, height)
    a = np.clip((a - threshold) / 0.25 + 0.5, 0, 1)
    ys, xs = np.nonzero(a > 0)
    return a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def _line_of_digits(digits_u8: list[np.ndarray], cell: int, gap: tuple[float, float], rng: np.random.Generator,
                    threshold: float, own: bool = False):
    """The digits side by side on one baseline, each a little bigger or smaller and higher or lower, the gap
    between neighbours' ink a random fraction of the cell (negative: they overlap). own: also each digit's own
    ink, float32 (digits, H, W) (where two overlap, the ink is both digits'), for training the segmentation's
    verifier (scripts/train_whole_digit.py)."""
    glyphs, tops = [], []
    for d in digits_u8:
        size = max(8, round(cell * rng.uniform(0.9, 1.1)))
        glyphs.append(_glyph(d, size, threshold))
        tops.append(round((cell - size) / 2 + rng.uniform(-0.05, 0.05) * cell))
    xs = [0]
    for g in glyphs[:-1]:
        xs.append(xs[-1] + g.shape[1] + round(rng.uniform(*gap) * cell))
    xs = [x - min(xs) for x in xs]  # a '1' narrower than the overlap puts the next digit left of the first
    top0 = min(tops)
    H = max(t - top0 + g.shape[0] for t, g in zip(tops, glyphs))
    out = np.zeros((H, max(x + g.shape[1] for x, g in zip(xs, glyphs))), np.float32)  # a narrow last digit
    # may end before its overlapping neighbour
    planes = np.zeros((len(glyphs) if own else 0, *out.shape), np.float32)
    for i, (x, t, g) in enumerate(zip(xs, tops, glyphs)):
        at = np.s_[t - top0:t - top0 + g.shape[0], x:x + g.shape[1]]
        np.maximum(out[at], g, out=out[at])
        if own:
            planes[i][at] = g
    return (out, planes) if own else out


def _fit_line(line: np.ndarray, H: int, W: int, rng: np.random.Generator) -> np.ndarray:
    """Scale a line of digits to 50-90 % of the canvas width (at most 60 % of its height), place it anywhere."""
    s = min(rng.uniform(0.5, 0.9) * W / line.shape[1], 0.6 * H / line.shape[0])
    size = (max(1, round(line.shape[1] * s)), max(1, round(line.shape[0] * s)))
    img = Image.fromarray(line, mode="F").resize(size, Image.Resampling.BILINEAR)
    return _place(np.clip(np.asarray(img, np.float32), 0, 1), (H, W), rng)


def render_number(digits_u8: list[np.ndarray], kind: str, rng: np.random.Generator):
    """Several real 28x28 digits written as one number: "apart" and "touching" are sketchpad values (the
    neighbours' ink 10-50 % of a digit cell apart, or touching and overlapping by up to 8 % of it); "photo" is
    a JPEG of dark ink on paper under uneven light; "form" the number written in a form's row of boxes, a
    digit in each (_form_number)."""
    if kind not in NUMBER_KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(NUMBER_KINDS)}")
    if kind == "form":
        return _form_number(digits_u8, rng)
    gap = (-0.08, 0.0) if kind == "touching" else (0.1, 0.5)
    line = _line_of_digits(digits_u8, 96, gap, rng, threshold=float(rng.uniform(0.25, 0.55)))
    if kind in ("apart", "touching"):
        H, W = int(rng.integers(400, 801)), int(rng.integers(400, 801))
        return _sketch_value(_fit_line(line, H, W, rng))
    H, W = int(rng.integers(480, 1201)), int(rng.integers(640, 1601))
    ink = _fit_line(line, H, W, rng)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / W + np.sin(angle) * yy / H)
    light = rng.uniform(0.7, 0.95) - rng.uniform(0.05, 0.25) * (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    pen = rng.uniform(0.05, 0.3)
    gray = light - ink * (light - pen) + rng.normal(0, 0.015, (H, W))
    tint = rng.uniform(0.9, 1.05, 3)  # warm or cool paper, blue or black pen
    return _jpeg(gray[..., None] * tint, int(rng.integers(60, 91)))


def _form_number(digits_u8: list[np.ndarray], rng: np.random.Generator) -> Image.Image:
    """A number written in a form's row of boxes (_form_page), a digit in each, 60-95 % of a box's height, a
    little off its centre; one pen for all, under uneven light, photographed."""
    page, centres, cell = _form_page(rng, len(digits_u8))
    H, W = page.shape[:2]
    pen = rng.uniform(0.035, 0.09) if rng.random() < 0.8 else None
    ink = np.zeros((H, W), np.float32)
    for d, (x, y) in zip(digits_u8, centres):
        size = max(8, int(cell * rng.uniform(0.6, 0.95)))
        glyph = _pen_glyph(d, size, rng, None if pen is None else pen * size)
        dx, dy = rng.uniform(-0.05, 0.05, 2) * cell
        x0, y0 = _corner((x + dx, y + dy), size, H, W)
        np.maximum(ink[y0:y0 + size, x0:x0 + size], glyph, out=ink[y0:y0 + size, x0:x0 + size])
    colour = INKS[list(INKS)[rng.integers(len(INKS))]]
    rgb = _compose(page, ink * rng.uniform(0.7, 1.0), colour, _light(H, W, rng, rng.uniform(0, 0.35)))
    return _finish(rgb, rng, (0, 1.2), (0.005, 0.03), (55, 96))
