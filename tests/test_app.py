"""The app: its functions called directly, and the real server (`python app.py` on a free loopback port)
called through gradio_client: real MNIST test digits as sketches and uploads on every backend, clear
messages for bad input, auth, a share link that cannot be made, and user checkpoints.

The server serves the shipped checkpoints/ (set APP_TEST_CHECKPOINTS_DIR to serve another folder).
"""
from __future__ import annotations

import io
import platform
import shutil
import time
import types
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageDraw

import app
from export.runtime import available_backends
from scripts.eval_drawings import make_requests, run_requests, summarise
from scripts.make_examples import slug
from tests._server import AppServer, free_port
from tests.conftest import APP_CHECKPOINTS

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = APP_CHECKPOINTS
BACKENDS = available_backends()
LIVE_KINDS = ("sketch", "jpeg", "inverted")
N_PER_KIND = 20  # digits per kind and backend; the 1000-per-kind figure comes from scripts/eval_drawings.py


@pytest.fixture(scope="module")
def shipped() -> Path:
    if not (CHECKPOINTS / "mnist_cnn.pt").is_file():
        pytest.fail(f"{CHECKPOINTS / 'mnist_cnn.pt'} is missing: the app serves the shipped checkpoints")
    return CHECKPOINTS


@pytest.fixture(scope="module")
def client(shipped_server) -> Client:
    """A client of the session's server (tests/conftest.py: `python app.py --checkpoints-dir` CHECKPOINTS)."""
    return Client(shipped_server.url, verbose=False)


@pytest.fixture(scope="module")
def reader(shipped_server) -> Client:
    """A client that takes only the answers, for tests that read the label alone: the output images stay on
    the server (their download is checked by the tests that use `client`)."""
    return Client(shipped_server.url, verbose=False, download_files=False)


@pytest.fixture(scope="module")
def drawings(mnist_test, tmp_path_factory):
    """N_PER_KIND real test digits per kind, rendered once as the files the API takes. The kinds every
    backend must read at 90 %+ here; the real-world kinds (pencil, ruled, photo...) are measured per kind in
    tests/test_preprocess_real.py and scripts/eval_drawings.py, where their own floors are."""
    return make_requests(mnist_test, LIVE_KINDS, N_PER_KIND, seed=1, folder=tmp_path_factory.mktemp("drawings"))


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------
# Through the live server


@pytest.mark.parametrize("backend", BACKENDS)
def test_real_digits_are_read_right_on_every_backend(reader, drawings, backend):
    # sent by 4 concurrent callers, so answers must also not get mixed up between users
    result = summarise(drawings, run_requests(reader, drawings, backend, workers=4))
    for kind, v in result["per_kind"].items():
        assert v["correct"] >= 0.9 * N_PER_KIND, f"{backend}, {kind}: {v}"
    assert result["overall"]["accuracy"] >= 0.95, f"{backend}: {result}"


def test_api_outputs_label_preview_timing_where_found_and_digits(client):
    label, preview, timing, found, digits = client.predict(handle_file(str(app.EXAMPLES_DIR / "mnist_7.png")),
                                                           api_name="/predict_upload")  # defaults: ONNX Runtime, mnist
    assert label["label"] == "7"
    assert len(label["confidences"]) == 3 and label["confidences"][0]["confidence"] > 0.5
    assert Image.open(preview).size == (28 * app.PREVIEW_SCALE, 28 * app.PREVIEW_SCALE)
    assert timing.startswith("ONNX Runtime: ") and " ms (preprocessing " in timing
    assert Image.open(found).size == (28 * 10, 28 * 10)  # a 28x28 upload: enlarged 10x, pixels kept
    assert len(digits) == 1 and digits[0]["caption"].startswith("1: 7 (")
    assert Image.open(digits[0]["image"]).size == (28 * app.DIGIT_SCALE, 28 * app.DIGIT_SCALE)


def test_http_api_as_the_round_trip_benchmark_calls_it(shipped_server):
    """scripts/bench_roundtrip.py times calls through Gradio's HTTP API (not gradio_client, which polls every
    50 ms): the same answer as the client's, and every output file it names can be downloaded."""
    from scripts.bench_roundtrip import call, file_data, output_urls

    base = shipped_server.url
    with httpx.Client(timeout=60) as http:
        answer = call(http, base, "predict_upload",
                      [file_data(http, base, str(app.EXAMPLES_DIR / "mnist_7.png")), "ONNX Runtime", "mnist"])
        assert answer[0]["label"] == "7"
        assert len(output_urls(answer)) == 3  # the preview, where it was found, the one digit's crop
        with pytest.raises(RuntimeError, match="answered error"):  # not an image: the app's message
            bad = app.ROOT / "README.md"
            call(http, base, "predict_upload", [file_data(http, base, str(bad)), "ONNX Runtime", "mnist"])


def test_sketch_thumbnail_is_the_drawing_on_white():
    """The sketchpad's RGBA composite is laid on white and shrunk with OpenCV (the fast path): the same
    picture as the general PIL path, which handles files, EXIF and layers."""
    rng = np.random.default_rng(0)
    rgba = np.zeros((560, 560, 4), np.uint8)  # transparent, with an opaque dark stroke and a faint one
    rgba[100:460, 260:300] = (20, 20, 20, 255)
    rgba[200:240, 60:500] = (200, 0, 0, 64)
    fast, size = app._thumbnail({"background": None, "layers": [], "composite": rgba})
    slow, _ = app._thumbnail({"background": None, "layers": [rgba], "composite": None})  # the PIL path
    assert size == (560, 560) and fast.size == slow.size == (280, 280)
    a, b = np.asarray(fast, int), np.asarray(slow, int)
    assert np.abs(a - b).mean() < 1.0 and np.percentile(np.abs(a - b), 99) <= 2
    assert (a[5, 5] == 255).all() and (a[150, 140] < 40).all()  # white where transparent, dark on the stroke
    gray = rng.integers(0, 256, (28, 28), dtype=np.uint8)  # small: enlarged by a whole factor, pixels kept
    thumb, _ = app._thumbnail(gray)
    assert thumb.size == (280, 280) and np.array_equal(np.asarray(thumb)[::10, ::10, 0], gray)


def test_an_upload_the_browser_cannot_draw_is_shown_as_a_copy_it_can(tmp_path):
    """A HEIC (an iPhone's photo, stored sideways) becomes an upright full-size JPEG in the upload box; a
    TIFF with transparency a PNG; what a browser draws, and what is no image, stay as they are."""
    exif = Image.Exif()
    exif[0x0112] = 6  # turn it 90 degrees clockwise to view
    Image.new("RGB", (300, 400), (230, 230, 225)).save(tmp_path / "IMG_1.HEIC", quality=90, exif=exif.tobytes())
    out = app.viewable_upload(str(tmp_path / "IMG_1.HEIC"), str(tmp_path / "cache"))
    with Image.open(out) as copy:
        assert copy.format == "JPEG" and copy.size == (400, 300) and Path(out).name == "IMG_1.jpeg"
    Image.new("RGBA", (64, 48), (0, 0, 0, 0)).save(tmp_path / "scan.tif")
    with Image.open(app.viewable_upload(str(tmp_path / "scan.tif"), str(tmp_path / "cache"))) as copy:
        assert copy.format == "PNG" and copy.mode == "RGBA" and copy.size == (64, 48)
    Image.new("RGB", (64, 48)).save(tmp_path / "drawn.png")
    (tmp_path / "notes.png").write_text("no image")
    for name in ("drawn.png", "notes.png"):
        assert not isinstance(app.viewable_upload(str(tmp_path / name), str(tmp_path / "cache")), str)


def sketched_seven() -> Image.Image:
    """A 7 drawn on the 560x560 sketchpad's transparent layer, 32 px wide."""
    layer = Image.new("RGBA", (560, 560), (0, 0, 0, 0))
    ImageDraw.Draw(layer).line([(180, 150), (380, 150), (260, 420)], fill=(0, 0, 0, 255), width=32)
    return layer


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator settings, seen in /proc")
def test_requests_reuse_the_memory_freed_before_them(shipped_server, tmp_path):
    """app.main calls keep_freed_memory: a drawing's request then works in memory that earlier requests
    freed. With glibc's defaults each sketch request here touched some 1200 pages for the first time (about
    4 ms of its round trip); with it, a few dozen."""
    from scripts.bench_roundtrip import call, file_data

    layer = sketched_seven()
    layer.save(tmp_path / "layer.png")
    Image.alpha_composite(Image.new("RGBA", layer.size, (255, 255, 255, 255)), layer).save(tmp_path / "all.png")
    base, pid = shipped_server.url, shipped_server.proc.pid

    def faults() -> int:  # minor page faults of the server, all its threads
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])

    with httpx.Client(timeout=60) as http:
        def sketch() -> None:
            files = [file_data(http, base, str(tmp_path / name)) for name in ("layer.png", "all.png")]
            answer = call(http, base, "predict_sketch",
                          [{"background": None, "layers": files[:1], "composite": files[1]}, "ONNX Runtime", "mnist"])
            assert answer[0]["label"] == "7"

        for _ in range(5):
            sketch()
        before = faults()
        for _ in range(20):
            sketch()
        per_request = (faults() - before) / 20
    assert per_request < 300, per_request


def drawn_box(found: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A where-found thumbnail -> (its RGB pixels, the box drawn on it in app.BOX_COLOUR: x0, y0, x1, y1 of
    its outer edge, inclusive). Fails unless the box is there and is a rectangle's outline."""
    rgb = np.asarray(Image.open(found).convert("RGB"))
    assert max(rgb.shape[:2]) <= app.THUMBNAIL, rgb.shape
    boxed = np.abs(rgb.astype(int) - app.BOX_COLOUR).max(axis=2) <= 40
    assert boxed.any(), "no box drawn"
    ys, xs = np.nonzero(boxed)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max(), ys.max()
    w = app.BOX_WIDTH
    for side in (boxed[y0:y1 + 1, x0:x0 + w], boxed[y0:y1 + 1, x1 - w + 1:x1 + 1],
                 boxed[y0:y0 + w, x0:x1 + 1], boxed[y1 - w + 1:y1 + 1, x0:x1 + 1]):
        assert side.mean() > 0.95, (x0, y0, x1, y1)  # each side drawn all along
    assert not boxed[y0 + w + 1:y1 - w, x0 + w + 1:x1 - w].any()  # and nothing inside it
    return rgb, (int(x0), int(y0), int(x1), int(y1))


def expected_outline(x0: int, y0: int, x1: int, y1: int, f: float) -> tuple[int, int, int, int]:
    """The outline drawn just outside the ink box [x0, x1) x [y0, y1) of the original, shrunk by f."""
    w = app.BOX_WIDTH
    return round(x0 * f) - w, round(y0 * f) - w, round(x1 * f) + w - 1, round(y1 * f) + w - 1


def test_upload_shows_where_the_digit_was_found(client, tmp_path):
    """A 7 in a known place on a 1600x1200 photo-like page (JPEG, decoded at half scale: the box goes
    through the ink map's scale): the thumbnail, 280x210, has the box around it."""
    page = np.clip(np.random.default_rng(0).normal(225, 3, (1200, 1600, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(page)
    draw = ImageDraw.Draw(img)
    draw.rectangle([1000, 400, 1199, 439], fill=(40, 40, 50))  # the bar, then the stem: ink in x 1000..1199,
    draw.rectangle([1150, 400, 1199, 699], fill=(40, 40, 50))  # y 400..699
    img.save(tmp_path / "page.jpg", quality=85)
    _, _, _, found, _ = client.predict(handle_file(str(tmp_path / "page.jpg")), api_name="/predict_upload")
    rgb, box = drawn_box(found)
    assert rgb.shape == (210, 280, 3)
    expected = expected_outline(1000, 400, 1200, 700, 280 / 1600)
    assert np.abs(np.subtract(box, expected)).max() <= 3, (box, expected)


def test_sketch_box_leaves_a_stray_tap_out(client, tmp_path):
    """A 7 drawn on the 560x560 sketchpad and a tap far from it: the box is the 7's, the tap shows outside."""
    layer = sketched_seven()
    x0, y0, x1, y1 = layer.getbbox()  # the 7's own ink
    ImageDraw.Draw(layer).ellipse([50, 480, 70, 500], fill=(0, 0, 0, 255))  # the tap, centred at (60, 490)
    layer.save(tmp_path / "layer.png")
    sketch = {"background": None, "layers": [handle_file(str(tmp_path / "layer.png"))], "composite": None}
    label, _, _, found, _ = client.predict(sketch, "ONNX Runtime", "mnist", api_name="/predict_sketch")
    rgb, box = drawn_box(found)
    f = 280 / 560
    assert rgb.shape == (280, 280, 3)  # the drawing, on white
    assert np.abs(np.subtract(box, expected_outline(x0, y0, x1, y1, f))).max() <= 3, box
    tap = round(60 * f), round(490 * f)
    assert rgb[tap[1], tap[0]].max() < 64  # the tap is in the thumbnail ...
    assert not (box[0] <= tap[0] <= box[2] and box[1] <= tap[1] <= box[3])  # ... outside the box
    assert label["label"] == "7"


def test_api_reads_a_whole_number(client, mnist_test, tmp_path):
    """"2026" in dark ink on photographed paper: the label is the number with its three likeliest readings, the
    preview the digits' 28x28s side by side, a crop per digit with its own reading, a box per digit."""
    from engine.render import render_number
    from scripts.eval_drawings import write_value

    labels = mnist_test.labels.numpy()
    digits = [mnist_test.images[int(np.flatnonzero(labels == int(c))[0]), 0].numpy() for c in "2026"]
    api_name, arg = write_value(render_number(digits, "photo", np.random.default_rng(0)), tmp_path, "year")
    label, preview, timing, found, crops = client.predict(arg, api_name=api_name)
    assert label["label"] == "2026" and len(label["confidences"]) == 3, label
    assert [c["caption"][:4] for c in crops] == ["1: 2", "2: 0", "3: 2", "4: 6"]
    assert Image.open(preview).size == (4 * 28 * app.PREVIEW_SCALE, 28 * app.PREVIEW_SCALE)
    assert timing.startswith("4 digits read. ONNX Runtime: "), timing
    # a box per digit, left to right, as where_found draws them for the same reading here
    from engine.reading import read
    from export.runtime import load_runtime

    runtime = load_runtime(CHECKPOINTS / "mnist_cnn.pt", "ONNX Runtime")
    r = read(arg["path"], runtime.spec, runtime.predict_proba)
    assert r.label == "2026" and len(r.boxes) == 4 and [b[0] for b in r.boxes] == sorted(b[0] for b in r.boxes)
    assert np.array_equal(np.asarray(Image.open(found).convert("RGB")), app.where_found(arg["path"], r))


def test_examples_gallery_is_read_right(reader):
    for path in sorted(app.EXAMPLES_DIR.glob("*.png")):
        model, name = path.stem.split("_", 1)  # mnist_7.png, fashion_ankle_boot.png
        label, *_ = reader.predict(handle_file(str(path)), "ONNX Runtime", model, api_name="/predict_upload")
        assert slug(label["label"]) == name, path.name


def test_bad_input_gets_a_clear_message_and_the_server_keeps_serving(client, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300), np.uint8)))[:3000])
    huge = tmp_path / "huge.png"  # 10000 x 9000 = 90 megapixels in a file of a few kB (a decompression bomb)
    Image.new("1", (10000, 9000)).save(huge)
    cases = [
        ("/predict_sketch", {"background": None, "layers": [], "composite": None}, "draw something first"),
        ("/predict_upload", handle_file(str(blank)), "no digit found in the image"),
        ("/predict_upload", handle_file(str(text)), "not an image"),
        ("/predict_upload", handle_file(str(truncated)), "damaged or truncated"),
        ("/predict_upload", handle_file(str(huge)), "megapixels"),
    ]
    for api_name, arg, message in cases:
        with pytest.raises(AppError, match=message):
            client.predict(arg, "ONNX Runtime", "mnist", api_name=api_name)
    label, *_ = client.predict(handle_file(str(app.EXAMPLES_DIR / "mnist_3.png")), api_name="/predict_upload")
    assert label["label"] == "3"


def test_unknown_model_or_backend_is_refused(client):
    image = handle_file(str(app.EXAMPLES_DIR / "mnist_3.png"))
    with pytest.raises(AppError, match="nope"):
        client.predict(image, "ONNX Runtime", "nope", api_name="/predict_upload")
    with pytest.raises(AppError, match="Tensorflow"):
        client.predict(image, "Tensorflow", "mnist", api_name="/predict_upload")


def test_auth_protects_page_and_api(shipped):
    with AppServer(["--checkpoints-dir", str(shipped)], env={app.AUTH_ENV: "alice:s3cret"}) as s:
        assert httpx.get(s.url + "config").status_code == 401
        assert httpx.post(s.url + "gradio_api/call/predict_upload", json={"data": []}).status_code == 401
        with pytest.raises(Exception):
            Client(s.url, verbose=False)
        with pytest.raises(Exception):
            Client(s.url, auth=("alice", "wrong"), verbose=False)
        authed = Client(s.url, auth=("alice", "s3cret"), verbose=False)
        label, *_ = authed.predict(handle_file(str(app.EXAMPLES_DIR / "mnist_1.png")), api_name="/predict_upload")
        assert label["label"] == "1"


def test_share_without_a_route_says_so_and_keeps_serving(shipped, tmp_path):
    """Also --max-file-size: this server takes uploads up to 50 kB."""
    closed = free_port()  # nothing listens there: the tunnel cannot be made, whatever the network
    args = ["--checkpoints-dir", str(shipped), "--share", "--share-server", f"127.0.0.1:{closed}",
            "--max-file-size", "50kb"]
    with AppServer(args) as s:
        client = Client(s.url, verbose=False)  # serving locally while the tunnel is attempted or failed
        label, *_ = client.predict(handle_file(str(app.EXAMPLES_DIR / "mnist_4.png")), api_name="/predict_upload")
        assert label["label"] == "4"
        for _ in range(120):
            if "no public link" in s.output():
                break
            time.sleep(0.5)
        out = s.output()
        assert f"no public link could be made through share server 127.0.0.1:{closed}" in out, out
        assert f"keeps serving locally at {s.url}" in out, out
        assert "Traceback" not in out, out

        big = tmp_path / "noise.png"  # about 90 kB
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300), np.uint8)).save(big)
        with open(big, "rb") as f:
            refused = httpx.post(s.url + "gradio_api/upload", files={"files": f})
        assert refused.status_code == 413 and "51200 bytes" in refused.text
        with pytest.raises(ValueError, match="maximum file size"):
            client.predict(handle_file(str(big)), api_name="/predict_upload")


# ----------------------------------------------------------------------------------------------------
# The functions, called directly


def test_share_link_is_reported_when_the_tunnel_works(monkeypatch, capsys):
    calls = []

    def fake_tunnel(**kw):  # the network boundary: gradio's frp tunnel
        calls.append(kw)
        return "https://abc123.example.org"

    monkeypatch.setattr(gr.networking, "setup_tunnel", fake_tunnel)
    demo = types.SimpleNamespace(server_name="127.0.0.1", server_port=7860, share_token="t",
                                 local_url="http://127.0.0.1:7860/", share_url=None)
    assert app.open_share_link(demo) == "https://abc123.example.org"
    assert calls[0]["share_server_address"] is None and calls[0]["local_port"] == 7860
    assert app.open_share_link(demo, "frp.example.org:7000") == "http://abc123.example.org"
    assert calls[1]["share_server_address"] == "frp.example.org:7000"
    assert demo.share_url == "http://abc123.example.org"
    assert "Running on public URL: http://abc123.example.org" in capsys.readouterr().out


def test_cli_flags_have_help_with_defaults(capsys):
    with pytest.raises(SystemExit):
        app.parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--host", "--port", "--share", "--share-server", "--auth", "--max-file-size", "--checkpoint",
                 "--checkpoints-dir", "--concurrency", "--queue-size"):
        assert flag in text
    assert text.count("(default") >= 10
    assert app.parse_args(["--auth", "bob:pw:with:colons"]).auth == ("bob", "pw:with:colons")
    for bad in (["--auth", "nopassword"], ["--share-server", "nohostport"], ["--share-server", "h:1"]):
        with pytest.raises(SystemExit):
            app.parse_args(bad)


def test_user_checkpoint_is_served_with_only_fresh_backends(tiny_checkpoint, shipped, tmp_path):
    """--checkpoint PATH: named by its stem, its own class names, only backends whose exports are fresh.
    A shipped model with a stale export lists the backend but refuses it with the rebuild command."""
    own = tmp_path / "own"
    own.mkdir()
    shutil.copy(tiny_checkpoint, own / "tiny_cnn.pt")
    shutil.copy(shipped / "mnist_cnn.onnx", own / "tiny_cnn.onnx")  # made from another checkpoint: stale
    stale_dir = tmp_path / "shipped"
    stale_dir.mkdir()
    shutil.copy(tiny_checkpoint, stale_dir / "mnist_cnn.pt")
    shutil.copy(shipped / "mnist_cnn.onnx", stale_dir / "mnist_cnn.onnx")
    try:
        models = app.load_models(stale_dir, [own / "tiny_cnn.pt"])
        assert set(models) == {"mnist", "tiny_cnn"}
        assert models["tiny_cnn"].offered == ["PyTorch"]
        # every required backend is listed (choosing a broken one says how to rebuild it); the optional
        # AOTInductor package was never built here, so it is not offered
        assert models["mnist"].offered == [b for b in BACKENDS if b != "PyTorch AOTInductor"]
        label, preview, timing, found, _ = app.predict_upload(str(app.EXAMPLES_DIR / "mnist_0.png"), "PyTorch",
                                                              "tiny_cnn")
        assert set(label) == set(models["tiny_cnn"].spec.class_names) and abs(sum(label.values()) - 1) < 1e-4
        assert found.dtype == np.uint8 and found.shape == (28 * 10, 28 * 10, 3)
        for model in ("mnist", "tiny_cnn"):
            with pytest.raises(gr.Error, match=r"python -m export --checkpoint"):
                app.predict_upload(str(app.EXAMPLES_DIR / "mnist_0.png"), "ONNX Runtime", model)
        with pytest.raises(gr.Error, match="draw something first"):
            app.predict_sketch({"background": None, "layers": [], "composite": None}, "PyTorch", "tiny_cnn")
        with pytest.raises(gr.Error, match=r"cannot benchmark tiny_cnn: .*python -m export --checkpoint"):
            app.run_benchmark_tab("tiny_cnn")
        with pytest.raises(app.CheckpointError, match="already served"):
            app.load_models(stale_dir, [own / "tiny_cnn.pt", own / "tiny_cnn.pt"])
    finally:
        app.MODELS.clear()


def test_live_events_blank_the_outputs_on_an_empty_canvas(shipped):
    cleared = {"background": None, "layers": [np.zeros((8, 8, 4), np.uint8)], "composite": None}
    try:
        app.load_models(shipped)
        assert app.predict_live(cleared, "PyTorch", "mnist") == (None, None, app.EMPTY_HINT, None, None)
        with pytest.raises(gr.Error, match="draw something first"):  # the API says so instead
            app.predict_sketch(cleared, "PyTorch", "mnist")
        label, *_ = app.predict_live(str(app.EXAMPLES_DIR / "mnist_5.png"), "PyTorch", "mnist")
        assert max(label, key=label.get) == "5"
    finally:
        app.MODELS.clear()


def test_a_live_answer_to_an_input_since_changed_never_lands_last(shipped, monkeypatch):
    """The page numbers its live events in the order the user acts (app.COUNT_JS); a request numbered before
    one its page has already started leaves the outputs alone, whether it arrives late (a sketch still being
    uploaded) or finishes late (two run at once): the answer shown is always for the newest input."""
    five, skip = str(app.EXAMPLES_DIR / "mnist_5.png"), (gr.skip(),) * len(app.OUTPUTS)
    page, other = types.SimpleNamespace(session_hash="page-1"), types.SimpleNamespace(session_hash="page-2")
    shown = app._if_visible("upload")

    def read(n, request, source="upload"):
        return shown(n, source, five, "PyTorch", "mnist", request)

    try:
        app.load_models(shipped)
        assert read(2, page)[2].startswith("PyTorch: ")
        assert read(1, page) == skip  # arrived after request 2: its input had changed before 2 was sent
        assert read(1, other)[2].startswith("PyTorch: ")  # each page keeps its own order
        assert read(9, page, source="sketch") == skip  # for the hidden tab: it answers nothing, and
        assert read(3, page)[2].startswith("PyTorch: ")  # so it is no newer input than this one's
        assert read(None, page)[2].startswith("PyTorch: ")  # no number (the page's script off): read as before

        answers = {}
        real = app.predict_live

        def while_reading(image, backend, model):  # request 5 starts while request 4 is being read
            if 5 not in answers:
                answers[5] = None
                answers[5] = read(5, page)
            return real(image, backend, model)

        monkeypatch.setattr(app, "predict_live", while_reading)
        answers[4] = read(4, page)
        assert answers[4] == skip and answers[5][2].startswith("PyTorch: ")
    finally:
        app.MODELS.clear()


def test_the_newest_request_is_remembered_for_a_bounded_number_of_pages():
    latest = app.LatestRequest(sessions=2)
    assert latest.start("a", 5) and latest.start("b", 1) and latest.start("c", 1)
    assert not latest.start("c", 0) and latest.is_newest("c", 1) and not latest.is_newest("c", 0.5)
    assert list(latest.newest) == ["b", "c"]  # "a", heard from least recently, is forgotten
    assert latest.start("a", 1)  # and its next request is simply read
