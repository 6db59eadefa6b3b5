// The sketch path of engine/preprocess (ink_map for a sketch, clean.keep_writing, frame.*), ported to the browser: a drawing's alpha channel -> the same
// 28x28 the server's preprocess() makes for the same strokes. One function per Python function, named
// alike, in the same order; tests/test_browser_backend.py checks this file against the live Python code on
// hundreds of drawings in Chromium, so the two cannot drift apart silently. Change both together.
//
//     import { preprocess } from "./preprocess.mjs";
//     const { x, preview } = preprocess(alpha, width, height, spec);
//     // alpha: Uint8ClampedArray/Uint8Array (H*W, 0-255) or the RGBA data of a canvas (H*W*4, stride 4)
//     // x: Float32Array(1*1*28*28) normalised; preview: Uint8Array(28*28)
//
// Arithmetic follows the Python exactly where it decides something: Pillow's resampling coefficients and
// its float32 image storage, torch's adaptive max-pool windows, Python's round-half-to-even.

export const BOX = 20;             // MNIST's glyph box inside the 28x28 frame
export const WORK = 4 * BOX;       // working resolution for stroke-weight adjustment
export const MNIST_STROKE = 7.4;   // median 2*area/boundary of MNIST test digits at the working resolution
export const INK_THRESHOLD = 0.2;  // ink below this is paper noise
export const JOIN = 0.06;          // a component joins the writing within JOIN + JOIN_SIZE * sqrt(its share of
export const JOIN_SIZE = 0.4;      // the core's ink) times the core's size; a tiny speck must almost touch it
export const SPECK = 0.0002;       // components smaller than this fraction of the image (and of 4 px) are noise
export const BAR = 4;              // a component this many times wider than tall, above the writing, is a 5's or
export const BAR_REACH = 0.5;      // 7's bar drawn apart from its body: it joins within this times the core's size
export const LEVEL_SLIVER = 6;     // a component this many times wider than tall is no digit's core

export class EmptyInputError extends Error {}

// A float32 image: data is row-major, h rows of w.
const image = (w, h, data = new Float32Array(w * h)) => ({ w, h, data });

// Python's round(): halves go to the even neighbour.
export function pyRound(v) {
  const f = Math.floor(v), d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

// ---------------------------------------------------------------------------------------------------
// Step 1: the sketch's alpha -> ink map in [0, 1] (ink_map for a sketchpad value)

// Only the part of the canvas holding ink is copied: every later step crops to the ink anyway, and a big
// canvas stays cheap while the pen moves. Returns null for an empty canvas.
const ALPHA = Float32Array.from({ length: 256 }, (_, v) => v / 255);  // alpha -> ink, as stored by the copy below

export function inkMap(alpha, w, h) {
  const stride = alpha.length === w * h * 4 ? 4 : 1, off = stride === 4 ? 3 : 0;
  let y0 = h, y1 = -1, x0 = w, x1 = -1;
  for (let y = 0; y < h; y++) {
    const row = y * w * stride + off;
    // the row's first ink from the left, then (only if there is one) its last from the right
    let a = 0;
    while (a < w && alpha[row + a * stride] === 0) a++;
    if (a === w) continue;
    let b = w - 1;
    while (alpha[row + b * stride] === 0) b--;
    if (y < y0) y0 = y;
    y1 = y;
    if (a < x0) x0 = a;
    if (b > x1) x1 = b;
  }
  if (y1 < 0) return null;
  const ink = image(x1 - x0 + 1, y1 - y0 + 1);
  for (let y = y0; y <= y1; y++) {
    const from = (y * w + x0) * stride + off, to = (y - y0) * ink.w;
    for (let x = 0; x < ink.w; x++) ink.data[to + x] = ALPHA[alpha[from + x * stride]];
  }
  return ink;
}

// ---------------------------------------------------------------------------------------------------
// Clean-up (clean.keep_writing): stray taps and specks away from the writing are dropped

// Connected components of ink > 0, 8-connected (cv2.connectedComponentsWithStats), numbered in the order of
// their first pixel in raster order (cv2's order), found over runs of ink in each row: two runs in adjacent
// rows touch when they overlap or meet at a corner. Returns each run ([row, first, end) and its component's
// index) and each component's area and bounding box. Runs, not pixels: a few hundred union-finds for a
// drawing instead of a flood fill over its every pixel.
function components(ink) {
  const { w, h, data } = ink;
  const ry = [], rx0 = [], rx1 = [], parent = [];
  const find = (r) => { while (parent[r] !== r) r = parent[r] = parent[parent[r]]; return r; };
  let prev = 0, prevEnd = 0;  // the previous row's runs: [prev, prevEnd)
  for (let y = 0; y < h; y++) {
    const row = y * w, first = ry.length;
    let j = prev;
    for (let x = 0; x < w; x++) {
      if (!(data[row + x] > 0)) continue;
      const x0 = x;
      while (x < w && data[row + x] > 0) x++;
      const r = ry.length;
      ry.push(y); rx0.push(x0); rx1.push(x); parent.push(r);
      // the previous row's runs that reach [x0 - 1, x] (8-connected), in order
      while (j < prevEnd && rx1[j] < x0) j++;
      for (let k = j; k < prevEnd && rx0[k] <= x; k++) {
        const a = find(k), b = find(r);
        if (a !== b) parent[Math.max(a, b)] = Math.min(a, b);
      }
    }
    prev = first; prevEnd = ry.length;
  }
  const index = new Map(), comps = [], comp = new Int32Array(ry.length);
  for (let r = 0; r < ry.length; r++) {
    const root = find(r);
    let i = index.get(root);
    if (i === undefined) { i = comps.length; index.set(root, i); comps.push({ area: 0, x0: w, y0: h, x1: -1, y1: -1 }); }
    comp[r] = i;
    const b = comps[i];
    b.area += rx1[r] - rx0[r];
    if (rx0[r] < b.x0) b.x0 = rx0[r];
    if (rx1[r] - 1 > b.x1) b.x1 = rx1[r] - 1;
    if (ry[r] < b.y0) b.y0 = ry[r];
    b.y1 = ry[r];
  }
  return { runs: { ry, rx0, rx1, comp }, comps: comps.map((b) => ({ area: b.area, x: b.x0, y: b.y0, w: b.x1 - b.x0 + 1, h: b.y1 - b.y0 + 1 })) };
}

// keep_writing: the largest component is the writing's core; others join it when near it for their size
// (a 5's top bar, a 4 or 7 in two strokes), which may bring more in reach; the rest is dropped.
// canvasArea: the whole canvas's pixels (ink may be the inked part of it only).
export function keepWriting(ink, canvasArea = ink.w * ink.h) {
  const { runs, comps } = components(ink);
  if (comps.length <= 1) return ink;
  const floor = Math.max(4, SPECK * canvasArea);
  // The core: the most ink among the components over the floor, but a level sliver counts for little.
  const weight = (b) => b.area * (b.w > LEVEL_SLIVER * b.h ? 0.1 : 1);
  let core = -1;
  comps.forEach((b, i) => { if (b.area >= floor && (core < 0 || weight(b) > weight(comps[core]))) core = i; });
  if (core < 0) { core = 0; for (let i = 1; i < comps.length; i++) if (comps[i].area > comps[core].area) core = i; }
  const c = comps[core], size = Math.max(c.w, c.h);
  const kept = new Uint8Array(comps.length);
  kept[core] = 1;
  let x0 = c.x, y0 = c.y, x1 = c.x + c.w, y1 = c.y + c.h, grew = true;
  while (grew) {
    grew = false;
    comps.forEach((b, i) => {
      if (kept[i] || b.area < floor) return;
      const gap = Math.max(x0 - (b.x + b.w), b.x - x1, y0 - (b.y + b.h), b.y - y1, 0);
      let reach = size * (JOIN + JOIN_SIZE * Math.sqrt(b.area / c.area));
      if (b.w >= BAR * b.h && b.y + b.h / 2 < y0) reach = Math.max(reach, BAR_REACH * size);  // a lifted bar
      if (gap <= reach) {
        kept[i] = 1;
        x0 = Math.min(x0, b.x); y0 = Math.min(y0, b.y); x1 = Math.max(x1, b.x + b.w); y1 = Math.max(y1, b.y + b.h);
        grew = true;
      }
    });
  }
  const out = image(ink.w, ink.h);
  for (let r = 0; r < runs.comp.length; r++) {
    if (!kept[runs.comp[r]]) continue;
    const row = runs.ry[r] * ink.w;
    out.data.set(ink.data.subarray(row + runs.rx0[r], row + runs.rx1[r]), row + runs.rx0[r]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Steps 2-4: ink map -> MNIST-like 28x28

// Pillow's precompute_coeffs (libImaging/Resample.c) for one axis: per output pixel, the first input
// pixel, how many, and their weights (doubles, normalised to sum 1).
function coeffs(inSize, outSize, filter, support) {
  const scale = inSize / outSize, filterscale = Math.max(scale, 1);
  support *= filterscale;
  const out = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale, ss = 1 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    const k = new Float64Array(Math.max(xmax, 0));
    let ww = 0;
    for (let x = 0; x < xmax; x++) { k[x] = filter((x + xmin - center + 0.5) * ss); ww += k[x]; }
    if (ww !== 0) for (let x = 0; x < xmax; x++) k[x] /= ww;
    out.push({ xmin, k });
  }
  return out;
}

const FILTERS = {
  box: [(x) => (x > -0.5 && x <= 0.5 ? 1 : 0), 0.5],
  bilinear: [(x) => { x = Math.abs(x); return x < 1 ? 1 - x : 0; }, 1],
};

// Pillow's resize of a mode "F" image: horizontal pass first (only over the rows the vertical pass reads),
// then vertical, each summing in double and storing float32.
function pillowResize(a, w, h, kind) {
  const [filter, support] = FILTERS[kind];
  if (w === a.w && h === a.h) return image(w, h, a.data.slice());
  const cx = coeffs(a.w, w, filter, support), cy = coeffs(a.h, h, filter, support);
  let src = a, y0 = 0;
  if (w !== a.w) {
    y0 = cy[0].xmin;
    const y1 = cy[h - 1].xmin + cy[h - 1].k.length;
    const tmp = image(w, y1 - y0);
    for (let y = 0; y < tmp.h; y++) {
      const row = (y + y0) * a.w;
      for (let x = 0; x < w; x++) {
        const { xmin, k } = cx[x];
        let ss = 0;
        for (let i = 0; i < k.length; i++) ss += a.data[row + xmin + i] * k[i];
        tmp.data[y * w + x] = ss;
      }
    }
    src = tmp;
  }
  if (h === a.h) return src;
  const out = image(w, h);
  for (let y = 0; y < h; y++) {
    const { xmin, k } = cy[y], first = xmin - y0;
    for (let x = 0; x < w; x++) {
      let ss = 0;
      for (let i = 0; i < k.length; i++) ss += src.data[(first + i) * w + x] * k[i];
      out.data[y * w + x] = ss;
    }
  }
  return out;
}

// _resize: area averaging when shrinking (anti-aliasing), bilinear when growing.
export function resize(a, w, h) {
  return pillowResize(a, w, h, w < a.w || h < a.h ? "box" : "bilinear");
}

export function bbox(ink, thr = INK_THRESHOLD) {
  let y0 = ink.h, y1 = -1, x0 = ink.w, x1 = -1;
  for (let y = 0; y < ink.h; y++) {
    const row = y * ink.w;
    for (let x = 0; x < ink.w; x++) {
      if (ink.data[row + x] > thr) {
        if (y < y0) y0 = y;
        y1 = y;
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
      }
    }
  }
  return y1 < 0 ? null : [y0, y1 + 1, x0, x1 + 1];
}

function crop(a, y0, y1, x0, x1) {
  const out = image(x1 - x0, y1 - y0);
  for (let y = y0; y < y1; y++) out.data.set(a.data.subarray(y * a.w + x0, y * a.w + x1), (y - y0) * out.w);
  return out;
}

// torch.nn.functional.adaptive_max_pool2d: window i covers [floor(i*in/out), ceil((i+1)*in/out)).
// Of a's rows [y0, y1) and columns [x0, x1) (a crop, without copying it).
function adaptiveMaxPool(a, w, h, [y0, y1, x0, x1] = [0, a.h, 0, a.w]) {
  const out = image(w, h), ch = y1 - y0, cw = x1 - x0;
  for (let oy = 0; oy < h; oy++) {
    const ys = Math.floor((oy * ch) / h), ye = Math.floor(((oy + 1) * ch + h - 1) / h);
    for (let ox = 0; ox < w; ox++) {
      const xs = Math.floor((ox * cw) / w), xe = Math.floor(((ox + 1) * cw + w - 1) / w);
      let m = -Infinity;
      for (let y = ys; y < ye; y++) {
        const row = (y + y0) * a.w + x0;
        for (let x = xs; x < xe; x++) { const v = a.data[row + x]; if (v > m) m = v; }
      }
      out.data[oy * w + ox] = m;
    }
  }
  return out;
}

// _fit: crop to the ink and scale so the longest side is `longest` pixels, keeping the aspect ratio;
// keepThin shrinks by max-pooling so a thin pen line survives at full strength.
export function fit(ink, longest, keepThin = false) {
  const bb = bbox(ink);
  if (bb === null) throw new EmptyInputError("draw something first: no ink was found in the image");
  const [y0, y1, x0, x1] = bb, ch = y1 - y0, cw = x1 - x0;
  const s = longest / Math.max(ch, cw);
  const w = Math.max(1, pyRound(cw * s)), h = Math.max(1, pyRound(ch * s));
  if (keepThin && s < 1) return adaptiveMaxPool(ink, w, h, bb);
  return resize(crop(ink, ...bb), w, h);
}

// stroke_width: 2 * area / boundary of the binarised ink (boundary: ink pixels with a paper 8-neighbour,
// the image's edge counting as paper), computed in float32 as torch does.
export function strokeWidth(ink) {
  const { w, h, data } = ink;
  let area = 0, boundary = 0;
  const on = (y, x) => y >= 0 && y < h && x >= 0 && x < w && data[y * w + x] > 0.5;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!(data[y * w + x] > 0.5)) continue;
      area++;
      let inner = true;
      for (let dy = -1; dy <= 1 && inner; dy++) for (let dx = -1; dx <= 1; dx++) if (!on(y + dy, x + dx)) { inner = false; break; }
      if (!inner) boundary++;
    }
  }
  if (area === 0) return 0;
  return Math.fround((2 * area) / Math.max(boundary, 1));
}

// _morph: zero-pad by radius (the glyph may grow), then a (2r+1)^2 max (dilate) or min (erode) filter whose
// window stops at the padded image's edge. Separable: rows, then columns.
export function morph(ink, radius, dilate) {
  const W = ink.w + 2 * radius, H = ink.h + 2 * radius;
  const padded = image(W, H);
  for (let y = 0; y < ink.h; y++) padded.data.set(ink.data.subarray(y * ink.w, (y + 1) * ink.w), (y + radius) * W + radius);
  const pick = dilate ? Math.max : Math.min;
  const pass = (src, step, len, lines, lineStep) => {
    const out = new Float32Array(src.length);
    for (let l = 0; l < lines; l++) {
      const base = l * lineStep;
      for (let i = 0; i < len; i++) {
        let m = src[base + i * step];
        const lo = Math.max(0, i - radius), hi = Math.min(len - 1, i + radius);
        for (let j = lo; j <= hi; j++) m = pick(m, src[base + j * step]);
        out[base + i * step] = m;
      }
    }
    return out;
  };
  const rows = pass(padded.data, 1, W, H, W);
  return image(W, H, pass(rows, W, H, W, 1));
}

// normalize_stroke: dilate thin strokes and erode fat ones towards MNIST's weight.
export function normalizeStroke(ink, target = MNIST_STROKE) {
  const w = strokeWidth(ink);
  if (w < 0.75 * target) return morph(ink, Math.max(1, pyRound((target - w) / 2)), true);
  if (w > 1.4 * target) return morph(ink, Math.max(1, pyRound((w - target) / 2)), false);
  return ink;
}

function paste(small, size, top, left) {
  const out = image(size, size);
  for (let y = 0; y < small.h; y++) {
    for (let x = 0; x < small.w; x++) {
      out.data[(top + y) * size + left + x] = Math.min(1, Math.max(0, small.data[y * small.w + x]));
    }
  }
  return out;
}

// to_mnist_frame: the digit in a box x box area, centred by centre of mass in size x size.
export function toMnistFrame(ink, size = 28, box = BOX) {
  let work = fit(ink, WORK, true);
  work = normalizeStroke(work);
  const small = fit(work, box);  // the morphology may have grown the glyph: crop again, then shrink
  const { w, h, data } = small;
  let mass = 0, my = 0, mx = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = data[y * w + x];
      mass += v; my += v * y; mx += v * x;
    }
  }
  const cy = my / mass + 0.5, cx = mx / mass + 0.5;
  const top = Math.min(Math.max(pyRound(size / 2 - cy), 0), size - h);  // keep the whole glyph inside
  const left = Math.min(Math.max(pyRound(size / 2 - cx), 0), size - w);
  return paste(small, size, top, left);
}

// to_object_frame: Fashion-MNIST framing, longest side to the full frame, centred by bounding box.
export function toObjectFrame(ink, size = 28) {
  const small = fit(ink, size);
  return paste(small, size, Math.floor((size - small.h) / 2), Math.floor((size - small.w) / 2));
}

// preprocess: the drawing -> normalised model input and the uint8 preview of what the model sees.
// spec: {height, mean, std, layout} as in the checkpoint's InputSpec. alpha may be a part of the drawing that
// holds all of its ink (the answer depends only on the ink); canvasArea is then the whole drawing's w * h.
export function preprocess(alpha, w, h, spec, canvasArea = w * h) {
  const ink = inkMap(alpha, w, h);
  if (ink === null) throw new EmptyInputError("draw something first: the canvas is empty");
  let frame;
  // garments are not writing: no stroke clean-up for them (the server's preprocess does the same)
  if (spec.layout === "object") frame = toObjectFrame(ink, spec.height);
  // writing: stray taps and specks away from the digit dropped first (clean.keep_writing, as on the server)
  else if (spec.layout === "digit") frame = toMnistFrame(keepWriting(ink, canvasArea), spec.height, pyRound((spec.height * BOX) / 28));
  else throw new Error(`unknown input layout ${spec.layout}; expected 'digit' or 'object'`);
  const n = frame.data.length, x = new Float32Array(n), preview = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = (frame.data[i] - spec.mean) / spec.std;
    preview[i] = pyRound(Math.fround(frame.data[i] * 255));
  }
  return { x, preview, frame: frame.data };
}
