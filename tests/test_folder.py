"""Image-folder datasets: layouts, the held-out split, bad folders, and a generated dataset of shapes run
through train -> evaluate -> export -> the app's prediction function."""
import contextlib
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from engine.folder import HOLDOUT_FRACTION, FolderDatasetError, load_folder_split
from engine.preprocess import preprocess

SHAPES = ("circle", "cross", "bar")


def draw_shape(kind: str, rng: np.random.Generator) -> Image.Image:
    """One shape of random size, place, stroke and colours: dark on light RGB, light on dark gray, or
    coloured ink on a transparent background."""
    w, h = (int(v) for v in rng.integers(40, 240, size=2))
    style = int(rng.integers(3))
    if style == 0:
        img = Image.new("RGB", (w, h), tuple(rng.integers(200, 256, 3).tolist()))
        ink = tuple(rng.integers(0, 80, 3).tolist())
    elif style == 1:
        img, ink = Image.new("L", (w, h), int(rng.integers(0, 40))), int(rng.integers(190, 256))
    else:
        img, ink = Image.new("RGBA", (w, h), (0, 0, 0, 0)), (*rng.integers(0, 256, 3).tolist(), 255)
    s = min(w, h) * rng.uniform(0.4, 0.8)
    cx, cy = w / 2 + rng.uniform(-0.1, 0.1) * w, h / 2 + rng.uniform(-0.1, 0.1) * h
    x0, y0, x1, y1 = cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2
    d, width = ImageDraw.Draw(img), max(2, int(s * rng.uniform(0.05, 0.15)))
    if kind == "circle":
        d.ellipse((x0, y0, x1, y1), outline=ink, width=width)
    elif kind == "cross":
        d.line((x0, y0, x1, y1), fill=ink, width=width)
        d.line((x0, y1, x1, y0), fill=ink, width=width)
    else:  # a roughly upright bar
        a = rng.uniform(-0.5, 0.5)
        dx, dy = np.sin(a) * s / 2, np.cos(a) * s / 2
        d.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=ink, width=width)
    return img


def make_folder(root: Path, per_class: int, classes=SHAPES, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = draw_shape(c, rng)
            if img.mode == "RGB" and i % 4 < 2:  # some as JPEG, some as HEIC (a phone's photos)
                img.save(root / c / f"{i:03d}.{('jpg', 'heic')[i % 4]}", quality=90)
            else:
                img.save(root / c / f"{i:03d}.png")
    return root


def frame_bytes(split) -> Counter:
    return Counter(bytes(f.numpy()) for f in split.images[:, 0])


# ---------------------------------------------------------------------------------------------------- layouts

def test_flat_folder_gets_a_stratified_deterministic_disjoint_holdout(tmp_path):
    root = make_folder(tmp_path / "shapes", per_class=10)
    train, test = load_folder_split(root, train=True), load_folder_split(root, train=False)
    assert train.class_names == test.class_names == sorted(SHAPES)  # ImageFolder's order: sorted names
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (1, 28, 28)
    per_test = round(10 * HOLDOUT_FRACTION)
    assert Counter(test.labels.tolist()) == {c: per_test for c in range(3)}
    assert Counter(train.labels.tolist()) == {c: 10 - per_test for c in range(3)}

    # Every file lands in exactly one split (as multisets: two files may make the same frame), as the
    # frame the app's preprocess() makes of it.
    app_frames = Counter(bytes(preprocess(p)[1]) for p in sorted(root.rglob("*.*")))
    assert frame_bytes(train) + frame_bytes(test) == app_frames
    # The split depends on the file names only: the same from a copy elsewhere (another machine, later).
    moved = load_folder_split(shutil.copytree(root, tmp_path / "elsewhere" / "copy"), train=False)
    assert torch.equal(moved.images, test.images) and torch.equal(moved.labels, test.labels)


def test_train_and_test_folders_are_used_as_they_are_with_labels_by_class_name(tmp_path):
    make_folder(tmp_path / "train", per_class=4)
    make_folder(tmp_path / "test", per_class=3, classes=("bar", "cross"), seed=1)  # no circles to test on
    train, test = load_folder_split(tmp_path, train=True), load_folder_split(tmp_path, train=False)
    assert len(train) == 12 and len(test) == 6
    assert test.class_names == train.class_names == ["bar", "circle", "cross"]
    assert Counter(test.labels.tolist()) == {0: 3, 2: 3}  # bar and cross keep the training indices


def test_unusable_images_are_skipped_with_a_warning_naming_them(tmp_path):
    root = make_folder(tmp_path / "shapes", per_class=5)
    (root / "bar" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.new("RGB", (50, 50), "white").save(root / "cross" / "blank.png")
    (root / "circle" / "notes.txt").write_text("not an image, not looked at")
    (root / "circle" / "._000.png").write_bytes(b"macOS resource fork, hidden: not looked at")
    with pytest.warns(UserWarning, match="skipped") as caught:
        train, test = load_folder_split(root, train=True), load_folder_split(root, train=False)
    said = " ".join(str(w.message) for w in caught)
    assert "broken.png (that file is not an image" in said and "blank.png (blank" in said
    assert "notes.txt" not in said and "._000.png" not in said
    assert len(train) + len(test) == 15


@pytest.mark.parametrize("case, message", [
    ("missing", "no folder at"),
    ("no_classes", "no class folders in"),
    ("empty_class", r"class folder\(s\) cross in .* hold no images"),
    ("one_class", "only one class folder .'circle'.; a classifier needs at least two"),
    ("unknown_test_class", "class folder.s. star that .* lacks"),
    ("class_all_unusable", "no usable training image left for class.es. cross"),
    ("too_few_to_hold_out", "too few images .* to hold any out"),
])
def test_bad_folders_fail_with_a_message_that_says_what_to_do(tmp_path, case, message):
    root = tmp_path / "data"
    if case == "no_classes":
        root.mkdir()
        Image.new("L", (9, 9)).save(root / "loose.png")
    elif case == "empty_class":
        make_folder(root, per_class=3, classes=("bar", "circle"))
        (root / "cross").mkdir()
        (root / "cross" / "readme.txt").write_text("images go here")
    elif case == "one_class":
        make_folder(root, per_class=3, classes=("circle",))
    elif case == "unknown_test_class":
        make_folder(root / "train", per_class=3, classes=("bar", "circle"))
        make_folder(root / "test", per_class=2, classes=("circle", "star"))
    elif case == "class_all_unusable":
        make_folder(root, per_class=4, classes=("bar", "circle"))
        (root / "cross").mkdir()
        for i in range(4):
            Image.new("RGB", (30, 30), "white").save(root / "cross" / f"blank{i}.png")
    elif case == "too_few_to_hold_out":
        make_folder(root, per_class=1, classes=("bar", "circle"))
    with pytest.warns(UserWarning) if case == "class_all_unusable" else contextlib.nullcontext():
        with pytest.raises(FolderDatasetError, match=message):
            load_folder_split(root, train=case != "unknown_test_class")


# ---------------------------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def shapes_checkpoint(tmp_path_factory) -> tuple[Path, Path, dict]:
    """A cnn trained on generated shapes: 40 per class in train/, 86 per class in test/ (258, enough for
    the exporter's batch-256 checks)."""
    from engine.train import main as train_main

    root = tmp_path_factory.mktemp("shapes")
    make_folder(root / "train", per_class=40, seed=0)
    make_folder(root / "test", per_class=86, seed=1)
    out = root / "models" / "shapes_cnn.pt"
    threads = torch.get_num_threads()
    try:  # one thread: this tiny model gains nothing from two, and loses much when cores are busy
        result = train_main(["--dataset", f"folder:{root}", "--model", "cnn", "--width", "8", "--epochs", "12",
                             "--batch-size", "32", "--threads", "1", "--no-progress", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    return root, out, result


def test_folder_model_trains_evaluates_and_exports_with_its_class_names(shapes_checkpoint):
    from engine.checkpoint import load_checkpoint
    from engine.evaluate import evaluate_checkpoint
    from export.__main__ import export_checkpoint
    from export.runtime import load_runtime, read_metadata

    root, out, result = shapes_checkpoint
    ckpt = load_checkpoint(out)
    names = ["bar", "circle", "cross"]
    assert ckpt["input_spec"]["class_names"] == names
    assert result["accuracy"] >= 90, f"shapes should be easy to tell apart, got {result['accuracy']:.1f}%"
    assert ckpt["history"][-1]["train_loss"] < ckpt["history"][0]["train_loss"]

    evaluated = evaluate_checkpoint(str(out))  # re-reads folder:PATH from the checkpoint's config
    assert evaluated["num_images"] == 258 and abs(evaluated["accuracy"] - result["accuracy"]) <= 1

    paths = export_checkpoint(out, speed_repeats=0, log=lambda line: None)
    assert json.loads(read_metadata(paths["onnx"])["class_names"]) == names
    rt = load_runtime(out, "ONNX Runtime")
    fresh = draw_shape("cross", np.random.default_rng(123))  # an image neither split has seen
    x, _ = preprocess(fresh, rt.spec)
    assert names[int(rt.predict_proba(x).argmax())] == "cross"


def test_app_serves_the_folder_model_with_its_own_labels(shapes_checkpoint, tmp_path):
    import app

    _, out, _ = shapes_checkpoint
    if not out.with_suffix(".onnx").is_file():  # when run alone, without the export test before it
        from export.__main__ import export_checkpoint
        export_checkpoint(out, speed_repeats=0, log=lambda line: None)
    fresh = tmp_path / "upload.png"
    draw_shape("circle", np.random.default_rng(7)).save(fresh)
    served = dict(app.MODELS)
    try:
        # What `python app.py --checkpoint .../shapes_cnn.pt` loads: the shipped models (those present
        # in checkpoints/) and this one under its file stem, each with its own labels.
        models = app.load_models(extra=[out])
        assert list(models)[-1] == "shapes_cnn"
        if "mnist" in models:
            assert models["mnist"].spec.class_names == [str(d) for d in range(10)]
        for backend in ("PyTorch", "ONNX Runtime", "ONNX Runtime int8"):
            confidences, preview, *_ = app.predict_upload(str(fresh), backend, "shapes_cnn")
            assert list(confidences) == ["bar", "circle", "cross"]
            assert max(confidences, key=confidences.get) == "circle", (backend, confidences)
            assert preview.shape == (28 * app.PREVIEW_SCALE, 28 * app.PREVIEW_SCALE)
    finally:
        app.MODELS.clear()
        app.MODELS.update(served)
