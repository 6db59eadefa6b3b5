"""Engine: every registered model, the training loop, resume, checkpoint safety, data, metrics."""
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine.checkpoint import CheckpointError, lineage, load_checkpoint, save_checkpoint
from engine.data import AUGMENT_PRESETS, TensorLoader, augment, centre_lines, load_dataset, pen_redraw, thin
from engine.metrics import confusion_matrix, summarize
from engine.models import create_model, list_models

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"


# ---------------------------------------------------------------------------------------------------- models

@pytest.mark.parametrize("name", list_models())
def test_model_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    x = torch.randn(5, 1, 28, 28)
    out = model(x)
    assert out.shape == (5, 7)
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert torch.isfinite(out).all()


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="known models: cnn, mlp, rnn, simple_cnn"):
        create_model("resnet9000")


# ---------------------------------------------------------------------------------------------------- data

def test_dataset_shapes(data_dir):
    test = load_dataset("mnist", data_dir, train=False, download=False)
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == torch.uint8
    assert test.labels.bincount().tolist()[:2] == [980, 1135]
    fashion = load_dataset("fashion", data_dir, train=False, download=False)
    assert fashion.class_names[9] == "Ankle boot"


def test_missing_data_names_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("mnist", str(tmp_path), train=True, download=False)
    msg = str(e.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg


def test_download_failure_is_explained(tmp_path, monkeypatch):
    from torchvision import datasets

    def offline(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: <urlopen error [Errno -3]>")
    monkeypatch.setattr(datasets.MNIST, "download", offline)
    with pytest.raises(RuntimeError, match="could not download MNIST into .*offline"):
        load_dataset("mnist", str(tmp_path), train=True, download=True)


def test_loader_shards_do_not_overlap():
    x = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1)
    y = torch.arange(100)
    seen = []
    for rank in range(2):
        loader = TensorLoader(x, y, 10, shuffle=True, seed=3, rank=rank, world_size=2, drop_last=True)
        loader.set_epoch(1)
        seen.append(torch.cat([yb for _, yb in loader]))
    assert len(seen[0]) == len(seen[1]) == 50
    assert not set(seen[0].tolist()) & set(seen[1].tolist())


def test_loader_gives_each_image_its_centre_lines():
    x = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1)
    lines = torch.arange(40).view(40, 1, 1, 1) * 10
    batches = list(TensorLoader(x, torch.arange(40), 8, shuffle=True, seed=1, lines=lines))
    assert all(torch.equal(ln, xb.long() * 10) for xb, _, ln in batches)
    assert len(next(iter(TensorLoader(x, torch.arange(40), 8, shuffle=True)))) == 2  # no lines: (images, labels)


@pytest.mark.parametrize("preset", ["digits", "fashion", "pen"])
def test_augment_keeps_shape_and_range(mnist_test, preset):
    x = mnist_test.images[:64].float() / 255
    lines = centre_lines(mnist_test.images[:64]) if AUGMENT_PRESETS[preset].pen else None
    out = augment(x, AUGMENT_PRESETS[preset], torch.Generator().manual_seed(0), lines)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    # The digit survives: most of the ink is still there.
    assert 0.6 < out.sum() / x.sum() < 1.6


def test_thinning_leaves_one_pixel_centre_lines():
    bar = torch.zeros(1, 1, 30, 40, dtype=torch.bool)
    bar[..., 10:17, 5:35] = True  # 7 px thick
    ring = torch.zeros(1, 1, 30, 40, dtype=torch.bool)
    yy, xx = torch.meshgrid(torch.arange(30), torch.arange(40), indexing="ij")
    ring[0, 0] = ((yy - 15) ** 2 + (xx - 20) ** 2 - 100).abs() < 40  # a thick circle of radius 10
    line, loop = thin(torch.cat([bar, ring]))
    assert (line[0].sum(0) <= 1).all() and line[0].sum() >= 20  # one pixel across, most of the bar long
    assert 12 <= line[0].nonzero()[:, 0].float().mean() <= 14  # down its middle
    assert loop.sum() >= 40 and not loop[0, 15, 20]  # the ring stays a ring
    for thinned in (line, loop):  # nowhere two pixels thick: no 2x2 block is all ink
        t = thinned[0].int()
        assert (t[:-1, :-1] + t[1:, :-1] + t[:-1, 1:] + t[1:, 1:]).max() < 4


def test_pen_redraws_a_digit_along_its_centre_line(mnist_test):
    """Each pen traces the digit where it is; a wider pen lays more ink, and every width stays a stroke."""
    x = mnist_test.images[:32]
    lines = centre_lines(x)
    assert lines.shape == (32, 1, 56, 56) and lines.dtype == torch.bool
    near = torch.nn.functional.max_pool2d(x.float(), 3, 1, 1) / 255 > 0.3  # the digit's ink, a pixel wider
    areas = []
    for r in (1, 2, 3):
        drawn = pen_redraw(lines, torch.full((32,), r))
        assert drawn.shape == (32, 1, 28, 28) and 0 <= drawn.min() and drawn.max() <= 1
        mine = drawn > 0.3
        on_digit = (mine & near).sum((1, 2, 3)) / mine.sum((1, 2, 3))
        assert on_digit.min() > 0.9, on_digit  # along the digit's own strokes, not beside them
        areas.append(mine.sum().item())
    assert areas[0] < areas[1] < areas[2]
    with pytest.raises(ValueError, match="centre lines"):
        augment(x.float() / 255, AUGMENT_PRESETS["pen"], torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------------------- metrics

def test_metrics_against_hand_computed():
    preds = torch.tensor([0, 0, 1, 1, 2, 2])
    labels = torch.tensor([0, 1, 1, 1, 2, 0])
    cm = confusion_matrix(preds, labels, 3)
    assert cm.tolist() == [[1, 0, 1], [1, 2, 0], [0, 0, 1]]
    s = summarize(cm, ["a", "b", "c"])
    assert s["accuracy"] == pytest.approx(100 * 4 / 6, abs=1e-3)
    assert s["per_class"]["b"] == {"precision": 1.0, "recall": pytest.approx(0.6667, abs=1e-4),
                                   "f1": pytest.approx(0.8, abs=1e-4), "support": 3}


# ---------------------------------------------------------------------------------------------------- training

def _train(args, cwd=ROOT, timeout=240):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "engine.train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_tiny_training_loss_falls(data_dir, tmp_path):
    from engine.train import main
    out = tmp_path / "m.pt"
    main(["--model", "cnn", "--width", "8", "--epochs", "3", "--max-train-images", "1536",
          "--max-test-images", "500", "--data-dir", data_dir, "--no-progress", "--out", str(out)])
    ckpt = load_checkpoint(out)
    losses = [h["train_loss"] for h in ckpt["history"]]
    assert losses[-1] < losses[0] * 0.8, losses
    assert ckpt["history"][-1]["test_acc"] > 40  # chance is 10 %
    assert ckpt["epoch"] == 3 and ckpt["input_spec"]["class_names"] == [str(i) for i in range(10)]
    assert set(ckpt["versions"]) >= {"torch", "torchvision", "python"}


def test_bf16_autocast_only_on_cpus_with_native_bf16():
    from engine.train import autocast_dtype, cpu_has_fast_bf16
    avx2 = {"avx2": True, "fma3": True, "avx512_f": False, "avx512_vnni": False, "avx512_bf16": False,
            "amx_tile": False, "amx_bf16": False}  # an AMD EPYC like the one this project is developed on
    assert autocast_dtype("auto", "cpu", avx2) is None
    assert autocast_dtype("auto", "cpu", {**avx2, "avx512_f": True, "avx512_vnni": True}) is None  # VNNI, no bf16
    assert autocast_dtype("auto", "cpu", {**avx2, "avx512_bf16": True}) is torch.bfloat16
    assert autocast_dtype("auto", "cpu", {**avx2, "amx_tile": True, "amx_bf16": True}) is torch.bfloat16
    assert autocast_dtype("auto", "cuda", avx2) is torch.bfloat16
    assert autocast_dtype("off", "cpu", {**avx2, "amx_bf16": True}) is None
    assert autocast_dtype("bf16", "cpu", avx2) is torch.bfloat16  # asked for explicitly
    # On the CPU running this test, the decision follows what the kernel reports about it.
    if Path("/proc/cpuinfo").is_file() and torch.cpu.get_capabilities().get("architecture") == "x86_64":
        flags = set(Path("/proc/cpuinfo").read_text().split())
        assert cpu_has_fast_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags), sorted(flags)


def test_dry_run(data_dir, tmp_path):
    r = _train(["--dry-run", "--model", "mlp", "--data-dir", data_dir, "--no-progress", "--out", str(tmp_path / "d.pt")])
    assert r.returncode == 0, r.stderr
    assert "epoch 1:" in r.stdout and (tmp_path / "d.pt").exists()


def test_init_fine_tunes_from_a_checkpoint(tiny_checkpoint, data_dir, tmp_path):
    """--init starts from a trained checkpoint's weights and model (its width, not the default's), records
    what it started from, and refuses one trained for other classes."""
    from engine.train import state_sha256
    out = tmp_path / "ft.pt"
    r = _train(["--init", str(tiny_checkpoint), "--augment", "pen", "--epochs", "1", "--lr", "0.01",
                "--max-train-images", "512", "--max-test-images", "500", "--data-dir", data_dir,
                "--no-progress", "--out", str(out)])
    assert r.returncode == 0, r.stderr
    assert "starting from the weights of" in r.stdout and "centre lines of 512" in r.stdout
    start, ft = load_checkpoint(tiny_checkpoint), load_checkpoint(out)
    assert ft["model_args"] == start["model_args"] and ft["config"]["width"] == 8
    assert ft["init"]["state_sha256"] == state_sha256(start["model"])
    assert ft["init"]["test_accuracy"] == start["metrics"]["test_accuracy"]
    assert [h["epoch"] for h in lineage(ft)] == [1, 2, 3, 4]  # the tiny run's 3 epochs, then this one
    # Fine-tuned, not trained afresh: one short low-rate epoch keeps what the tiny model knew.
    assert ft["metrics"]["test_accuracy"] > 0.8 * start["metrics"]["test_accuracy"]
    r = _train(["--init", str(tiny_checkpoint), "--dataset", "fashion", "--dry-run", "--data-dir", data_dir,
                "--no-progress", "--out", str(tmp_path / "f.pt")])
    assert r.returncode != 0 and "start from a checkpoint of the same dataset" in r.stderr
    assert not (tmp_path / "f.pt").exists()


RESUME_ARGS = ["--model", "cnn", "--width", "8", "--epochs", "3", "--max-train-images", "4096",
               "--max-test-images", "200", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "full.pt"
    r = _train(RESUME_ARGS + ["--data-dir", data_dir, "--out", str(out)])
    assert r.returncode == 0, r.stderr
    return load_checkpoint(out)


def _assert_same_run(a, b):
    assert a["epoch"] == b["epoch"] and len(a["history"]) == len(b["history"])
    for k, v in b["model"].items():
        torch.testing.assert_close(a["model"][k], v, rtol=1e-4, atol=1e-5, msg=f"weights differ at {k}")


def test_resume_continues_from_last_epoch(data_dir, tmp_path, uninterrupted):
    """Stop after epoch 1 of 3, resume, and land where an uninterrupted run lands."""
    out = tmp_path / "part.pt"
    r = _train(RESUME_ARGS + ["--data-dir", data_dir, "--out", str(out), "--stop-after-epoch", "1"])
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(out)["epoch"] == 1
    r = _train(["--resume", str(out), "--no-progress"])
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stdout and "epoch 2:" in r.stdout and "epoch 1:" not in r.stdout
    _assert_same_run(load_checkpoint(out), uninterrupted)


def test_kill_9_mid_run_then_resume_loses_nothing(data_dir, tmp_path, uninterrupted):
    """SIGKILL a run once its first checkpoint is on disk: the file is whole, and resuming finishes the job."""
    victim = tmp_path / "victim.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "engine.train", *RESUME_ARGS, "--data-dir", data_dir,
                             "--out", str(victim)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not victim.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no cleanup handlers run
    assert proc.wait(timeout=30) == -9, "the run finished before it could be killed"
    killed_at = load_checkpoint(victim)["epoch"]  # loads: never half-written
    assert 1 <= killed_at < 3
    r = _train(["--resume", str(victim), "--no-progress"])
    assert r.returncode == 0, r.stderr
    _assert_same_run(load_checkpoint(victim), uninterrupted)


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PWNED_MARKER']}",))


def test_pickle_payload_is_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PWNED_MARKER", str(marker))
    evil = tmp_path / "evil.pt"
    torch.save({"format": "digits-engine/1", "model": Payload()}, evil)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(evil)
    assert not marker.exists(), "the pickled payload ran"


def test_truncated_checkpoint_gives_clear_error(tiny_checkpoint, tmp_path):
    data = tiny_checkpoint.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(bad)


def test_foreign_and_missing_files(tmp_path):
    foreign = tmp_path / "state_dict.pt"
    torch.save(create_model("mlp").state_dict(), foreign)
    with pytest.raises(CheckpointError, match="not a checkpoint written by engine.train"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_save_is_atomic(tiny_checkpoint, tmp_path):
    """A save that fails midway leaves the previous checkpoint byte-identical and no stray temp file."""
    target = tmp_path / "ckpt.pt"
    target.write_bytes(tiny_checkpoint.read_bytes())
    before = target.read_bytes()
    with pytest.raises((pickle.PicklingError, AttributeError)):  # torch reports a local lambda either way
        save_checkpoint(target, {"model": lambda: None})  # unpicklable: torch.save fails midway
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_evaluate_cli_writes_json(tiny_checkpoint, data_dir, tmp_path):
    out = tmp_path / "m.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "engine.evaluate", "--checkpoint", str(tiny_checkpoint),
                        "--data-dir", data_dir, "--json", str(out), "--plot-dir", str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())
    assert 50 < m["accuracy"] <= 100 and m["num_images"] == 10000
    assert sum(map(sum, m["confusion_matrix"])) == 10000 and len(m["per_class"]) == 10
    assert "confusion matrix" in r.stdout
    assert (tmp_path / "tiny_cnn_confusion.png").stat().st_size > 1000


# ---------------------------------------------------------------------------------------------------- shipped models

@pytest.mark.parametrize("name, dataset, target", [("mnist_cnn", "mnist", 99.65), ("fashion_cnn", "fashion", 93.5)])
def test_shipped_checkpoint_accuracy(name, dataset, target, data_dir):
    from engine.evaluate import evaluate_checkpoint
    path = CHECKPOINTS / f"{name}.pt"
    assert path.stat().st_size < 5 * 1024 * 1024
    result = evaluate_checkpoint(str(path), data_dir, download=False)
    assert result["dataset"] == dataset and result["num_images"] == 10000
    assert result["accuracy"] >= target, result["accuracy"]
    recorded = json.loads((CHECKPOINTS / f"{name}.metrics.json").read_text())
    assert recorded["accuracy"] == pytest.approx(result["accuracy"], abs=0.011)


# ---------------------------------------------------------------------------------------------------- preprocessing

@pytest.mark.parametrize("name, dataset, layout, floor", [("mnist_cnn", "mnist", "digit", 0.99),
                                                         ("fashion_cnn", "fashion", "object", 0.90)])
def test_test_images_survive_preprocessing(name, dataset, layout, floor, data_dir):
    """Real 28x28 test images pushed through the app's preprocessing are still read right."""
    import numpy as np
    from PIL import Image
    from engine.checkpoint import load_model
    from engine.preprocess import preprocess

    model, spec = load_model(CHECKPOINTS / f"{name}.pt")
    assert spec.layout == layout  # Fashion-MNIST is framed like garments, not like digits
    test = load_dataset(dataset, data_dir, train=False, download=False)
    xs = np.concatenate([preprocess(Image.fromarray(test.images[i, 0].numpy()), spec)[0] for i in range(500)])
    with torch.inference_mode():
        acc = (model(torch.from_numpy(xs)).argmax(1) == test.labels[:500]).float().mean().item()
    assert acc >= floor, acc


def test_checkpoint_records_every_model_argument(tiny_checkpoint):
    """Defaults filled in, so a checkpoint rebuilds the same model even if a registry default changes."""
    args = load_checkpoint(tiny_checkpoint)["model_args"]
    assert args == {"num_classes": 10, "width": 8, "dropout": 0.1}
    from engine.models import resolve_model_args
    assert resolve_model_args("rnn", num_classes=3) == {"num_classes": 3, "hidden": 128, "cell": "gru", "layers": 1}
    with pytest.raises(TypeError):
        resolve_model_args("mlp", widht=3)  # a misspelt argument is refused, not silently recorded
