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


@pytest.fixture(scope="session")
def tiny_exported(tmp_path_factory, tiny_checkpoint, data_dir) -> Path:
    """A copy of the tiny checkpoint with every export beside it, made and verified (on the full 10k test
    set) by the exporter's CLI, once for the session (tests/test_export.py, tests/test_benchmark.py); returns
    the checkpoint. Not to be changed: a test that modifies exports works on a copy of its own."""
    import shutil

    import export.__main__ as export_cli
    ckpt = tmp_path_factory.mktemp("exported") / "tiny.pt"
    shutil.copy(tiny_checkpoint, ckpt)
    rc = export_cli.main(["--checkpoint", str(ckpt), "--data-dir", data_dir, "--calibration-images", "300",
                          "--speed-repeats", "3"])
    assert rc == 0
    return ckpt


# The app as it ships: one server for the session


APP_CHECKPOINTS = Path(os.environ.get("APP_TEST_CHECKPOINTS_DIR", CHECKPOINTS))


@pytest.fixture(scope="session")
def shipped_server():
    """`python app.py --checkpoints-dir checkpoints/` (or $APP_TEST_CHECKPOINTS_DIR) on a free loopback port,
    started once and shared by every module that only calls it as it ships (tests/test_app.py, the browser
    tests); a test that needs other flags starts its own AppServer."""
    from tests._server import AppServer
    if not (APP_CHECKPOINTS / "mnist_cnn.pt").is_file():
        pytest.fail(f"{APP_CHECKPOINTS / 'mnist_cnn.pt'} is missing: the app serves the shipped checkpoints")
    with AppServer(["--checkpoints-dir", str(APP_CHECKPOINTS)]) as server:
        yield server


@pytest.fixture(scope="session")
def browser(shipped_server):
    """(Chromium, the app's URL): one headless Chromium for the session, on the shared app server
    (tests/test_browser.py and tests/test_browser_backend.py; each test opens its own browser context)."""
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium, shipped_server.url
        finally:
            chromium.close()
