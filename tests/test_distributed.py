"""DistributedDataParallel under torchrun: 2 gloo ranks on CPU over loopback, short runs.

Four launches of about 10 s each on 2 idle cores (LAUNCH_TIMEOUT_S bounds each): an uninterrupted run, a rank that dies, a rank whose
weights drift (the run must refuse to go on), and a --resume under torchrun that must land on exactly
the uninterrupted run's weights.
"""
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.checkpoint import build_model, load_checkpoint
from engine.evaluate import evaluate_checkpoint
from engine.train import cpu_has_fast_bf16, evaluate_split, main as train_main, state_sha256

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_TIMEOUT_S = 300
RUN = ["--dataset", "mnist", "--model", "cnn", "--width", "8", "--epochs", "2", "--max-train-images", "2000",
       "--max-test-images", "500", "--no-download", "--no-progress"]

# Runs engine.train with a fault injected into rank 1 after its second epoch of training.
FAULTY_TRAIN = """
import os, sys, torch
import engine.train as T
fault, real_train, epochs = sys.argv.pop(1), T.train_one_epoch, []
def train_one_epoch(model, *args, **kwargs):
    stats = real_train(model, *args, **kwargs)
    epochs.append(1)
    if os.environ["RANK"] == "1" and len(epochs) == 2:
        if fault == "exit":
            os._exit(3)  # the process vanishes mid-run, as after an OOM kill or a lost node
        with torch.no_grad():  # a change DDP does not know about: the replicas drift apart
            next(model.parameters()).add_(1e-4)
    return stats
T.train_one_epoch = train_one_epoch
T.main(sys.argv[1:])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(target: list[str], data_dir: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", *target, "--data-dir", data_dir]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("ddp") / "full.pt"
    return ok(torchrun(["-m", "engine.train", *RUN, "--out", str(out)], data_dir)), out


def test_two_ranks_train_identical_weights_and_checkpoint_evaluates(full_run, data_dir, mnist_test):
    stdout, out = full_run
    assert "world size 2" in stdout
    assert stdout.count("epoch 2:") == 1, "only rank 0 should print"
    # train.py all-gathers a sha256 of every rank's weights and buffers each epoch and fails on any
    # difference; the digest they agreed on must be that of the checkpoint rank 0 wrote.
    agreed = stdout.split("all 2 ranks hold identical weights and buffers: state sha256 ")[1].split()[0]
    ckpt = load_checkpoint(out)
    assert state_sha256(ckpt["model"]) == agreed
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 2
    rng = ckpt["rng"]["per_rank"]
    assert len(rng) == 2 and not torch.equal(rng[0], rng[1]), "each rank keeps its own dropout RNG"
    h = ckpt["history"]
    assert h[1]["train_loss"] < h[0]["train_loss"]

    # The test metrics reduced across ranks (each rank scored half of the 500 images) match a
    # single-process evaluation of the saved model with the same bf16 setting (to within one image).
    model, spec = build_model(ckpt)
    amp = torch.bfloat16 if ckpt["config"]["amp"] != "off" and cpu_has_fast_bf16() else None
    summary, loss = evaluate_split(model, mnist_test.images[:500], mnist_test.labels[:500], spec, amp_dtype=amp)
    assert summary["num_images"] == 500
    assert abs(summary["accuracy"] - h[1]["test_acc"]) <= 0.2 and abs(loss - h[1]["test_loss"]) < 0.01

    result = evaluate_checkpoint(str(out), data_dir, download=False)  # the CLI's path: whole test set
    assert result["num_images"] == 10_000
    assert result["accuracy"] > 30, "2 epochs on 2,000 images should be well above chance (10 %)"


def test_rank_that_dies_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, data_dir):
    script, out = tmp_path / "faulty_train.py", tmp_path / "run.pt"
    script.write_text(FAULTY_TRAIN)
    # A surviving rank that waited for the process-group timeout (30 min) would hit LAUNCH_TIMEOUT_S;
    # gloo notices the closed connection and fails within seconds.
    proc = torchrun([str(script), "exit", *RUN, "--out", str(out)], data_dir)
    assert proc.returncode != 0
    assert re.search(r"exitcode\s*:\s*3", proc.stderr), "torchrun should name the rank that failed first"
    assert load_checkpoint(out)["epoch"] == 1, "epoch 1's checkpoint must survive intact"


def test_diverged_replicas_fail_the_run_and_resume_under_torchrun_replays_exactly(full_run, tmp_path, data_dir):
    script, out = tmp_path / "faulty_train.py", tmp_path / "run.pt"
    script.write_text(FAULTY_TRAIN)
    proc = torchrun([str(script), "drift", *RUN, "--out", str(out)], data_dir)
    assert proc.returncode != 0
    assert "DDP replicas diverged after epoch 2" in proc.stderr
    assert load_checkpoint(out)["epoch"] == 1, "nothing may be saved from a diverged epoch"

    stdout = ok(torchrun(["-m", "engine.train", "--resume", str(out), "--no-progress"], data_dir))
    assert "resuming from" in stdout and "after epoch 1" in stdout
    # Same shards, same per-rank augmentation and dropout RNG: bit for bit the uninterrupted run.
    _, full = full_run
    assert state_sha256(load_checkpoint(out)["model"]) == state_sha256(load_checkpoint(full)["model"])


def test_resume_with_another_number_of_processes_is_refused(full_run, tmp_path, data_dir):
    _, full = full_run
    with pytest.raises(SystemExit, match="trained with 2 process.*Resume with the same number of processes"):
        train_main(["--resume", str(full), "--out", str(tmp_path / "x.pt"), "--data-dir", data_dir,
                    "--no-progress"])
