// The in-browser backend: a drawing canvas whose strokes are read by ONNX Runtime Web (WebAssembly) in the
// visitor's browser, while the pen moves, with no request to the server. Mounted by the app's gr.HTML
// (browser_backend.py); everything it loads comes from the app itself: this file, preprocess.mjs, the
// vendored ONNX Runtime Web in ./ort/ and the model's .onnx export.
//
// Why its own canvas and not the sketchpad's: Gradio's sketchpad paints with PixiJS into GPU textures and
// hands the drawing over only when a stroke ends (as uploaded PNG layers); a plain 2D canvas can be read
// synchronously (getImageData, under a millisecond) after every pointer move.

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

// mount(element, props, trigger): props.models = {name: {url, spec}}, props.backend = this backend's name.
// Results go out as props.value (JSON), which fires the gr.HTML's "change"; the page's listener shows them in
// the same Top 3 / preview / time outputs the server backends fill.
export function mount(element, props) {
  const models = JSON.parse(props.models);
  const canvas = element.querySelector("canvas");
  const status = element.querySelector(".web-status");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  canvas.width = canvas.height = CANVAS;
  const previewCanvas = document.createElement("canvas");
  previewCanvas.width = previewCanvas.height = 224;
  const sessions = {};  // model name -> Promise<InferenceSession>, created on first use
  let selected = window.digitsSelection || { model: props.model, backend: props.selected_backend };
  let drawn = 0, shown = 0, busy = false, failed = false;  // drawn/shown: pen-move counters
  let last = null;

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
    props.value = JSON.stringify(result);
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

  async function read() {
    const seq = drawn, name = selected.model, { spec } = models[name];
    shown = seq;  // this read answers every move up to here
    const t0 = performance.now();
    let pre;
    try {
      pre = preprocess(ctx.getImageData(0, 0, CANVAS, CANVAS).data, CANVAS, CANVAS, spec);
    } catch (e) {
      if (!(e instanceof EmptyInputError)) throw e;
      return publish({ empty: true });
    }
    const { ort, s } = await session(name);
    const t1 = performance.now();
    const out = await s.run({ image: new ort.Tensor("float32", pre.x, [1, 1, spec.height, spec.width]) });
    const t2 = performance.now();
    const probs = softmax(out.logits.data);
    const top = probs.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, 3);
    const pctx = previewCanvas.getContext("2d");
    const img = pctx.createImageData(spec.width, spec.height);
    pre.preview.forEach((v, i) => { img.data.set([v, v, v, 255], 4 * i); });
    const tiny = new OffscreenCanvas(spec.width, spec.height);
    tiny.getContext("2d").putImageData(img, 0, 0);
    pctx.imageSmoothingEnabled = false;  // pixels stay pixels, as the server's preview
    pctx.drawImage(tiny, 0, 0, 224, 224);
    if (selected.model !== name) return;  // the model changed meanwhile: the next read uses it
    const result = {
      label: spec.class_names[top[0][1]],
      confidences: top.map(([p, i]) => ({ label: spec.class_names[i], confidence: p })),
      preview: previewCanvas.toDataURL("image/png"),
      timing: `${props.backend}: ${(t2 - t1).toFixed(2)} ms in this page (preprocessing ${(t1 - t0).toFixed(1)} ms)`,
      seq,
    };
    publish(result);
    // for scripts/bench_browser.py: what this reading puts on the page, to recognise it there
    trace({ shown: seq, t: performance.now(), model_ms: t2 - t1, pre_ms: t1 - t0, view: window.__digitsTrace && {
      label: result.label, preview: result.preview,
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
    last = points[points.length - 1];
  }

  canvas.addEventListener("pointerdown", (ev) => {
    canvas.setPointerCapture(ev.pointerId);
    last = at(ev);
    stroke([last]);
    drawn++;
    trace({ move: drawn, t: ev.timeStamp });
    update();
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (last === null) return;
    const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [];
    stroke((events.length ? events : [ev]).map(at));
    drawn++;
    trace({ move: drawn, t: ev.timeStamp });
    update();
  });
  const lift = () => { last = null; };
  canvas.addEventListener("pointerup", lift);
  canvas.addEventListener("pointercancel", lift);
  element.querySelector(".web-clear").addEventListener("click", () => {
    ctx.clearRect(0, 0, CANVAS, CANVAS);
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
