"""The in-browser backend of the app: ONNX Runtime Web reads drawings in the visitor's browser.

    from browser_backend import BROWSER_BACKEND, browser_pad, wire_browser_pad
    pad = browser_pad({"mnist": (checkpoint_path, spec)}, model="mnist", visible=False)   # inside gr.Blocks
    wire_browser_pad(pad, model, backend, [label, preview, timing, found])   # outputs after the 3rd are cleared

The page gets a canvas of its own (a gr.HTML) whose JavaScript (static/browser_backend.mjs) preprocesses the
drawing with a port of engine.preprocess (static/preprocess.mjs, checked against the Python by
tests/test_browser_backend.py) and runs the model's ONNX export with ONNX Runtime Web after every pen move.
Its answers go to the page's own outputs: written into them in place while the pen moves, and through a
JavaScript-only listener when it is up (so Gradio's state matches the page): no request reaches the server
per stroke. Everything is served by the app (gr.set_static_paths): the two modules, the vendored ONNX Runtime
Web in static/ort/ and the .onnx files; nothing comes from another host.
"""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from engine.models import InputSpec

ROOT = Path(__file__).resolve().parent
STATIC = ROOT / "static"
BROWSER_BACKEND = "ONNX Runtime Web (in your browser)"
SERVER_FALLBACK = "ONNX Runtime"  # the same .onnx file, on the server: where WebAssembly cannot run


def _file_url(path: Path) -> str:
    """A static file's URL relative to the page, so it also works under a proxy's path or a share link."""
    return f"gradio_api/file={Path(path).resolve()}"


def onnx_path(checkpoint: Path) -> Path:
    return Path(checkpoint).with_suffix(".onnx")


PAD_HTML = """
<div class="web-pad">
  <canvas class="web-canvas" aria-label="Draw here (read in your browser)"></canvas>
  <div class="web-bar">
    <button class="web-clear" type="button" aria-label="Clear drawing">Clear</button>
    <span class="web-status">loading ONNX Runtime Web…</span>
  </div>
</div>
"""

PAD_CSS = """
.web-canvas { display: block; width: min(560px, 100%); aspect-ratio: 1; background: #fff; touch-action: none;
              border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg); cursor: crosshair; }
.web-bar { display: flex; gap: 1em; align-items: center; margin-top: .5em; font-size: var(--text-sm); }
.web-clear { padding: .25em 1em; border: 1px solid var(--border-color-primary); border-radius: var(--radius-md); }
"""

# Loads the module from the app itself; a browser that cannot load it gets the fallback message.
PAD_JS = """
import(new URL(props.module_url, document.baseURI).href)
  .then((m) => m.mount(element, props))
  .catch((e) => {
    console.error(e);
    element.querySelector('.web-status').textContent = 'In-browser reading is not available here (' + e.message + ').';
    props.value = JSON.stringify({fallback: true, message: 'In-browser reading is not available here: ' + e.message});
  });
"""

# The pad's result -> the page's outputs (Top 3, preview, time, then any others: cleared, the page computes
# nothing for them) and, where WebAssembly failed, the backend.
SHOW_JS = """
(value, backend) => {{
  const r = value ? JSON.parse(value) : null, rest = Array({rest}).fill(null);
  // an empty Label is {{}}: null leaves the old answer on the page
  if (!r || r.empty) return [{{}}, null, {empty_hint}, ...rest, backend];
  if (r.fallback) return [{{}}, null, r.message, ...rest, {fallback}];
  const preview = {{path: 'preview.png', url: r.preview, orig_name: 'preview.png', mime_type: 'image/png',
                    meta: {{_type: 'gradio.FileData'}}}};
  return [{{label: r.label, confidences: r.confidences}}, preview, r.timing, ...rest, backend];
}}
"""

# The model and backend chosen on the page -> the pad (a DOM event; no server involved).
SELECT_JS = """
(model, backend) => {
  window.digitsSelection = {model, backend};
  window.dispatchEvent(new CustomEvent('digits-select', {detail: window.digitsSelection}));
}
"""


def browser_pad(models: dict[str, tuple[Path, InputSpec]], model: str, backend: str, sketch_id: str,
                brush_radius: int, **kwargs) -> gr.HTML:
    """The in-browser backend's canvas, for models given as name -> (checkpoint, input spec); their .onnx
    exports and static/ are made servable. While the in-browser backend is chosen, the page shows it in place
    of the sketchpad with elem_id `sketch_id` (switched in the page: a server-side visibility update would
    replace the gr.HTML's props)."""
    gr.set_static_paths([STATIC, *(onnx_path(ckpt) for ckpt, _ in models.values())])
    served = {name: {"url": _file_url(onnx_path(ckpt)),
                     "spec": {"height": spec.height, "width": spec.width, "mean": spec.mean, "std": spec.std,
                              "layout": spec.layout, "class_names": list(spec.class_names)}}
              for name, (ckpt, spec) in models.items()}
    return gr.HTML(value="", html_template=PAD_HTML, css_template=PAD_CSS, js_on_load=PAD_JS,
                   module_url=_file_url(STATIC / "browser_backend.mjs"), models=json.dumps(served),
                   model=model, backend=BROWSER_BACKEND, selected_backend=backend, sketch_id=sketch_id,
                   brush_radius=brush_radius, **kwargs)


def wire_browser_pad(pad: gr.HTML, model: gr.Dropdown, backend: gr.Dropdown, outputs: list,
                     empty_hint: str) -> None:
    """Tell the pad the model and backend chosen; put its answers in the outputs (Top 3, preview, time; any
    further output, such as where the digit was found, is cleared). JavaScript-only listeners: none of this
    talks to the server."""
    gr.on([model.change, backend.change], None, [model, backend], None, js=SELECT_JS)
    # where the pad writes its answers itself while the pen moves (the config is built when the Blocks close)
    pad.props["outputs"] = json.dumps([o.elem_id for o in outputs[:3]])
    pad.change(None, [pad, backend], [*outputs, backend],
               js=SHOW_JS.format(empty_hint=json.dumps(empty_hint), fallback=json.dumps(SERVER_FALLBACK),
                                 rest=len(outputs) - 3))
