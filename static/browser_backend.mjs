// The in-browser backend: a drawing canvas whose strokes are read by ONNX Runtime Web (WebAssembly) in the
// visitor's browser, while the pen moves, with no request to the server. Mounted by the app's gr.HTML
// (browser_backend.py); everything it loads comes from the app itself: this file, preprocess.mjs, the
// vendored ONNX Runtime Web in ./ort/ and the model's .onnx export.
//
// Why its own canvas and not the sketchpad's: Gradio's sketchpad paints with PixiJS into GPU textures and
// hands the drawing over only when a stroke ends (as uploaded PNG layers); a plain 2D canvas can be read
// synchronously (getImageData, under a millisecond) after every pointer move.
//
// While the pen moves, each answer is written straight into the page's Top 3, preview and time (the nodes
// Gradio rendered, changed in place): going through Gradio's value and event machinery took 7 ms p50 (24 ms
// p90) a reading.
// When the pen is up (and whenever those nodes are not there, e.g. after a clear), the answer goes through
// Gradio as well, so Gradio's own state ends equal to what the page shows.

import { EmptyInputError, preprocess } from "./preprocess.mjs";

const CANVAS = 560;  // same drawing surface and brush as the server backends' sketchpad (app.py)

let ortPromise = null;

// ONNX Runtime Web, WebAssembly only. Without cross-origin isolation (a normal Gradio page) the browser
// has no SharedArrayBuffer, so the wasm runs single-threaded; for one 28x28 image that costs little.
function loadOrt() {
  ortPromise ??= (async () => {
    if (typeof WebAssembly !== "object") throw new Error("this browser cannot run WebAssembly");
    const t0 = performance.now();
    const ort = await import(new URL("./ort/ort.wasm.bundle.min.mjs", import.meta.url).href);
    // the .wasm only: the bundle carries its own loader, so nothing else is fetched
    ort.env.wasm.wasmPaths = { wasm: new URL("./ort/ort-wasm-simd-threaded.wasm", import.meta.url).href };
    ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    ort.env.wasm.proxy = false;
    window.__digitsTrace?.push({ ort_import_ms: performance.now() - t0 });
    return ort;
  })();
  return ortPromise;
}

function softmax(logits) {
  const m = Math.max(...logits), e = Array.from(logits, (v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

const setText = (el, text) => {  // in the text node Gradio (Svelte) keeps a reference to, not a new one
  const node = el.firstChild;
  if (node && node.nodeType === Node.TEXT_NODE && !node.nextSibling) { if (node.nodeValue !== text) node.nodeValue = text; }
  else el.textContent = text;
};
const setAttr = (el, name, value) => { if (el.getAttribute(name) !== value) el.setAttribute(name, value); };

// The page's Top 3 (gr.Label), preview (gr.Image) and time (gr.Textbox), found by their elem_ids, as Gradio
// rendered them: null when they are not all there (e.g. an empty Label, which has no classes to change).
function outputNodes(ids, n) {
  const [label, preview, timing] = (ids || []).map((id) => document.getElementById(id));
  const top = label?.querySelector('[data-testid="label-output-value"]');
  const sets = [...(label?.querySelectorAll(".confidence-set") ?? [])].map((b) => ({
    b, meter: b.querySelector("meter"), name: b.querySelector("dt"), pct: b.querySelector("dd") }));
  const img = preview?.querySelector(".image-frame img"), box = timing?.querySelector("textarea");
  if (!top || !img || !box || sets.length !== n || sets.some((x) => !x.meter || !x.name || !x.pct)) return null;
  return { top, sets, img, link: preview.querySelector("a.download-link"), box };
}

// What Gradio's Label, Image and Textbox render for this answer, written into their nodes.
function writeInPlace(out, r) {
  setText(out.top, r.label);
  out.sets.forEach(({ b, meter, name, pct }, i) => {
    const c = r.confidences[i], percent = Math.round(c.confidence * 100), id = `meter-text-${c.label.replace(/\s/g, "-")}`;
    setAttr(b, "data-testid", `${c.label}-confidence-set`);
    setAttr(meter, "aria-labelledby", id);
    setAttr(meter, "aria-label", c.label);
    setAttr(meter, "aria-valuenow", String(percent));
    meter.value = c.confidence;
    meter.style.width = `${c.confidence * 100}%`;
    setAttr(name, "id", id);
    setText(name, c.label);
    setText(pct, `${percent}%`);
  });
  setAttr(out.img, "src", r.preview);
  if (out.link) setAttr(out.link, "href", r.preview);
  if (out.box.value !== r.timing) out.box.value = r.timing;
}

// mount(element, props, trigger): props.models = {name: {url, spec}}, props.backend = this backend's name,
// props.outputs = the elem_ids of the Top 3, preview and time (JSON). Results go out as props.value (JSON),
// which fires the gr.HTML's "change"; the page's listener shows them in the same Top 3 / preview / time
// outputs the server backends fill. While the pen moves they are written into those outputs directly.
export function mount(element, props) {
  const models = JSON.parse(props.models);
  const outputIds = props.outputs ? JSON.parse(props.outputs) : null;
  const canvas = element.querySelector("canvas");
  const status = element.querySelector(".web-status");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  canvas.width = canvas.height = CANVAS;
  const previewCanvas = document.createElement("canvas");
  previewCanvas.width = previewCanvas.height = 224;
  const pctx = previewCanvas.getContext("2d");
  pctx.imageSmoothingEnabled = false;  // pixels stay pixels, as the server's preview
  const sessions = {};  // model name -> Promise<InferenceSession>, created on first use
  let selected = window.digitsSelection || { model: props.model, backend: props.selected_backend };
  let drawn = 0, shown = 0, busy = false, failed = false;  // drawn/shown: pen-move counters
  let last = null;
  let latest = null;     // the newest answer on the page
  let handedOver = null; // the last answer given to Gradio, until the page shows it (then null)
  let inked = null;      // [x0, y0, x1, y1]: the canvas's part that may hold ink (all of it is read from there)

  const visible = () => canvas.offsetParent !== null;
  // While this backend is chosen the pad takes the sketchpad's place.
  const layout = () => {
    const chosen = selected.backend === props.backend;
    element.style.display = chosen ? "" : "none";
    const sketch = document.getElementById(props.sketch_id);
    if (sketch) sketch.style.display = chosen ? "none" : "";
  };
  const active = () => selected.backend === props.backend && visible() && !failed;
  const trace = (entry) => window.__digitsTrace?.push(entry);

  function publish(result) {
    handedOver = result;
    props.value = JSON.stringify(result);
  }

  // Does the page show this answer (Gradio has rendered what it was given)?
  function onPage(r, out) {
    const label = document.getElementById(outputIds?.[0]);
    if (r.empty || r.fallback) return !label?.querySelector('[data-testid="label-output-value"]');
    return out !== null && out.top.firstChild?.nodeValue === r.label && out.img.getAttribute("src") === r.preview;
  }

  // An answer onto the page: in place while the pen moves and Gradio has nothing of ours still to render
  // (written in place, a late render of an older answer would overwrite it); through Gradio otherwise, and
  // also once the pen is up (settle), so that Gradio's state is what the page shows.
  function show(result, settle) {
    const out = result.confidences ? outputNodes(outputIds, result.confidences.length) : null;
    if (handedOver && onPage(handedOver, out)) handedOver = null;
    latest = result;
    if (out && !handedOver) {
      writeInPlace(out, result);
      if (settle) publish(result);
    } else {
      publish(result);
    }
  }

  // The pen is up and no reading runs: Gradio gets the answer on the page, if it does not have it yet.
  function settle() {
    if (latest && !busy && props.value !== JSON.stringify(latest)) publish(latest);
  }

  function session(name) {
    sessions[name] ??= loadOrt().then(async (ort) => {
      const t0 = performance.now();
      const s = await ort.InferenceSession.create(new URL(models[name].url, document.baseURI).href,
                                                  { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
      const loadMs = performance.now() - t0;
      trace({ load: name, ms: loadMs, ready: performance.now() });
      status.textContent = `${name}: ONNX Runtime Web (WebAssembly) ready`;
      return { ort, s, loadMs };
    });
    return sessions[name];
  }

  // The canvas's pixels that may hold ink: only they are read (preprocess crops to the ink first anyway, so
  // the answer is the same as from the whole canvas; the canvas's area still counts for the clean-up).
  function inkedPixels() {
    if (inked === null) return null;
    const [x0, y0, x1, y1] = inked;
    return { data: ctx.getImageData(x0, y0, x1 - x0, y1 - y0).data, w: x1 - x0, h: y1 - y0 };
  }

  let tiny = null, tinyPixels = null;  // the 28x28 preview, reused
  function previewUrl(preview, spec) {
    if (tiny?.width !== spec.width || tiny?.height !== spec.height) {
      tiny = new OffscreenCanvas(spec.width, spec.height);
      tinyPixels = new ImageData(spec.width, spec.height);
      tinyPixels.data.fill(255);  // opaque; only the grey is written below
    }
    const px = tinyPixels.data;
    for (let i = 0; i < preview.length; i++) px[4 * i] = px[4 * i + 1] = px[4 * i + 2] = preview[i];
    tiny.getContext("2d").putImageData(tinyPixels, 0, 0);
    pctx.drawImage(tiny, 0, 0, 224, 224);
    return previewCanvas.toDataURL("image/png");
  }

  async function read() {
    const seq = drawn, name = selected.model, { spec } = models[name];
    shown = seq;  // this read answers every move up to here
    const t0 = performance.now();
    let pre;
    try {
      const px = inkedPixels();
      if (px === null) throw new EmptyInputError("the canvas is empty");
      pre = preprocess(px.data, px.w, px.h, spec, CANVAS * CANVAS);
    } catch (e) {
      if (!(e instanceof EmptyInputError)) throw e;
      return show({ empty: true, seq }, true);
    }
    const { ort, s } = await session(name);
    const t1 = performance.now();
    const out = await s.run({ image: new ort.Tensor("float32", pre.x, [1, 1, spec.height, spec.width]) });
    const t2 = performance.now();
    const probs = softmax(out.logits.data);
    const top = probs.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, 3);
    if (selected.model !== name) return;  // the model changed meanwhile: the next read uses it
    const result = {
      label: spec.class_names[top[0][1]],
      confidences: top.map(([p, i]) => ({ label: spec.class_names[i], confidence: p })),
      preview: previewUrl(pre.preview, spec),
      timing: `${props.backend}: ${(t2 - t1).toFixed(2)} ms in this page (preprocessing ${(t1 - t0).toFixed(1)} ms)`,
      seq,
    };
    show(result, last === null);
    // for scripts/bench_browser.py: what this reading puts on the page, to recognise it there
    trace({ shown: seq, start: t0, t: performance.now(), model_ms: t2 - t1, pre_ms: t1 - t0, out_ms: performance.now() - t2,
            view: window.__digitsTrace && { label: result.label, preview: result.preview,
                                            top: result.confidences.map((c) => [c.label, Math.round(c.confidence * 100)]) } });
  }

  // One read at a time; moves made while one runs are folded into a single next read.
  async function update() {
    if (!active()) return;
    if (busy) return;
    busy = true;
    try {
      do { await read(); } while (active() && shown < drawn && !failed);
    } catch (e) {
      fail(e);
    } finally {
      busy = false;
    }
  }

  function fail(e) {
    failed = true;
    console.error(e);
    const why = e && e.message ? e.message : String(e);
    status.textContent = `In-browser reading is not available here (${why}); reading on the server instead.`;
    publish({ fallback: true, message: status.textContent });
  }

  function at(ev) {
    const r = canvas.getBoundingClientRect();
    return [((ev.clientX - r.left) * CANVAS) / r.width, ((ev.clientY - r.top) * CANVAS) / r.height];
  }

  function stroke(points) {
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.lineWidth = 2 * props.brush_radius;
    ctx.strokeStyle = "#000";
    ctx.beginPath();
    ctx.moveTo(...last);
    for (const p of points) ctx.lineTo(...p);
    ctx.stroke();
    // the brush's reach, and a pixel or two of anti-aliasing beyond it
    const r = props.brush_radius + 2;
    for (const [x, y] of [last, ...points]) {
      const box = [Math.floor(x - r), Math.floor(y - r), Math.ceil(x + r) + 1, Math.ceil(y + r) + 1];
      inked = inked === null ? box : [Math.min(inked[0], box[0]), Math.min(inked[1], box[1]),
                                      Math.max(inked[2], box[2]), Math.max(inked[3], box[3])];
    }
    inked = [Math.max(0, inked[0]), Math.max(0, inked[1]), Math.min(CANVAS, inked[2]), Math.min(CANVAS, inked[3])];
    if (inked[0] >= inked[2] || inked[1] >= inked[3]) inked = null;  // all of it off the canvas
    last = points[points.length - 1];
  }

  canvas.addEventListener("pointerdown", (ev) => {
    canvas.setPointerCapture(ev.pointerId);
    last = at(ev);
    stroke([last]);
    drawn++;
    trace({ move: drawn, t: ev.timeStamp, handled: performance.now() });
    update();
  });
  // Pointer moves as they come where the browser offers it (pointerrawupdate: Chromium, in a secure context);
  // "pointermove" is held back until the next animation frame, a wait of up to a frame on every move.
  const MOVE = "onpointerrawupdate" in window ? "pointerrawupdate" : "pointermove";
  canvas.addEventListener(MOVE, (ev) => {
    if (last === null) return;
    const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [];
    stroke((events.length ? events : [ev]).map(at));
    drawn++;
    trace({ move: drawn, t: ev.timeStamp, handled: performance.now() });
    update();
  });
  const lift = () => { last = null; settle(); };
  canvas.addEventListener("pointerup", lift);
  canvas.addEventListener("pointercancel", lift);
  element.querySelector(".web-clear").addEventListener("click", () => {
    ctx.clearRect(0, 0, CANVAS, CANVAS);
    inked = null;
    drawn++;
    update();
  });

  // The model or backend chosen in the page (app's js listener), and showing the tab again: read again.
  window.addEventListener("digits-select", (ev) => {
    selected = ev.detail;
    layout();
    if (selected.backend === props.backend && !failed) session(selected.model).catch(fail);
    drawn++;
    update();
  });
  layout();
  new ResizeObserver(() => { if (visible()) { drawn++; update(); } }).observe(canvas);
  if (selected.backend === props.backend) session(selected.model).catch(fail);
  else loadOrt().catch(() => {});  // warm up quietly; errors are reported when the backend is chosen
}
