"""Shared test setup: offline, quiet, data from ../shared/data (or $DIGITS_DATA_DIR)."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
_shared = ROOT.parent / "shared" / "data"
if "DIGITS_DATA_DIR" not in os.environ and _shared.is_dir():
    os.environ["DIGITS_DATA_DIR"] = str(_shared)

CHECKPOINTS = ROOT / "checkpoints"


@pytest.fixture(scope="session")
def data_dir() -> str:
    d = os.environ.get("DIGITS_DATA_DIR")
    if not d or not (Path(d) / "MNIST" / "raw").is_dir():
        pytest.fail("MNIST not found: set DIGITS_DATA_DIR to a folder holding MNIST/raw "
                    "(CI points it at ../shared/data)")
    return d


@pytest.fixture(scope="session")
def mnist_test(data_dir):
    from engine.data import load_dataset
    return load_dataset("mnist", data_dir, train=False, download=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, data_dir) -> Path:
    """A real `cnn` checkpoint trained briefly on 4,096 MNIST images (a few seconds on 2 cores; about 90 %)."""
    from engine.train import main as train_main
    out = tmp_path_factory.mktemp("tiny") / "tiny_cnn.pt"
    train_main(["--dataset", "mnist", "--model", "cnn", "--width", "8", "--epochs", "3",
                "--max-train-images", "4096", "--max-test-images", "500", "--data-dir", data_dir,
                "--no-download", "--no-progress", "--out", str(out)])
    return out
