"""The benchmark end to end on CPU with tiny settings: files are well formed, every engine agrees with eager.

Speed is reported by the benchmark, never asserted here: these tests check the measurement, not the machine.
"""
import csv
import json
import shutil
import time

import matplotlib.image
import numpy as np
import pytest

from export.benchmark import (COLUMNS, ENGINE_NAMES, Engine, fastest_pytorch, format_table, main, make_row,
                              run_benchmark, time_calls)
from export.runtime import refused_exports
from tests.test_export import copy_exports

CPU_ENGINES = ["eager", "torchscript", "ort", "ort-int8"]


@pytest.fixture(scope="module")
def exported(tiny_exported, tmp_path_factory):
    """A copy of the tiny checkpoint with all its exports beside it, made by the real exporter (once for the
    session: tests/conftest.py)."""
    return copy_exports(tiny_exported, tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="module")
def result(exported):
    # int8 may be refused by the exporter on some CPUs (its accuracy depends on the int8 kernels)
    engines = [e for e in CPU_ENGINES if e != "ort-int8" or "int8" not in refused_exports(exported)]
    return run_benchmark(exported, batch_sizes=(1, 32), engines=engines, threads=1, quick=True)


def test_rows_are_complete_and_sane(result):
    rows, header = result["rows"], result["header"]
    assert header["engines"][:3] == CPU_ENGINES[:3]
    assert [(r["engine"], r["batch_size"]) for r in rows] == [(e, b) for b in (1, 32) for e in header["engines"]]
    for r in rows:
        assert set(COLUMNS) <= set(r)
        assert r["threads"] == 1 and r["device"] == "cpu"
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["img_per_s"] == pytest.approx(r["batch_size"] / (r["p50_ms"] / 1e3), rel=1e-3)
        peak = header["peaks"]["cpu/int8" if r["precision"] == "int8" else "cpu/fp32"]["gflops"]
        assert r["gflops"] == pytest.approx(header["mflops_per_image"] / 1e3 * r["img_per_s"], rel=1e-3)
        assert r["peak_share"] == pytest.approx(r["gflops"] / peak, rel=1e-2)
        assert r["calls"] >= 10
    assert header["peak_gflops"] > 0 and all(p["gflops"] > 0 for p in header["peaks"].values())
    assert header["versions"]["onnxruntime"] and header["machine"]["cpus"] >= 1


def test_a_fast_call_s_row_keeps_its_precision():
    """A 43.85 us call (the tiny model at batch 1 on a fast CPU): its p50 was rounded to 0.1 us, and its
    images/s, from the p50 itself, then disagreed with the row's p50 by 1.1e-3 (a test run failed on it)."""
    engine = Engine("eager", "torch", "cpu", "fp32", prepare=None)
    times = np.full(11, 43.845e-6)
    logits = np.zeros((1, 10), np.float32)
    row = make_row(engine, 1, 1, times, logits, logits, 58_000_000, {"cpu/fp32": {"gflops": 5000.0}})
    assert row["img_per_s"] == pytest.approx(1 / (row["p50_ms"] / 1e3), rel=1e-5)
    assert row["peak_share"] == pytest.approx(row["gflops"] / 5000.0, rel=1e-3) and row["peak_share"] > 0


def test_every_engine_matches_eager(result):
    for r in result["rows"]:
        if r["engine"] == "eager":
            assert r["max_abs_diff"] == 0
        elif r["precision"] == "fp32":  # same arithmetic, reordered (and BatchNorm folded): float noise only
            assert r["max_abs_diff"] < 1e-3, r
        else:  # int8: its accuracy is the CPU's int8 kernels' business, checked by the exporter (>= 97 %
            # top-1 agreement on the test set); here only that the rows are sane
            assert np.isfinite(r["max_abs_diff"]) and (r["batch_size"] == 1 or r["top1_agree"] >= 0.9), r


def test_cli_writes_wellformed_json_csv_png(exported, tmp_path, capsys):
    out = {k: tmp_path / f"bench.{k}" for k in ("json", "csv", "png")}
    main(["--checkpoint", str(exported), "--batch-sizes", "1,4", "--engines", "eager,ort", "--threads", "1",
          "--quick", "--json", str(out["json"]), "--csv", str(out["csv"]), "--plot", str(out["png"])])
    table = capsys.readouterr().out
    assert "p50 ms" in table and "ort" in table

    saved = json.loads(out["json"].read_text())
    assert saved["header"]["batch_sizes"] == [1, 4] and len(saved["rows"]) == 4

    lines = out["csv"].read_text().splitlines()
    header_lines = [line for line in lines if line.startswith("# ")]
    assert json.loads(header_lines[0].split(": ", 1)[1])  # every header field is a JSON value
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert list(rows[0])[:len(COLUMNS)] == COLUMNS
    assert [float(r["p50_ms"]) for r in rows] == [r["p50_ms"] for r in saved["rows"]]

    image = matplotlib.image.imread(out["png"])
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    assert np.ptp(image) > 0  # not a blank canvas


def test_quick_drops_large_batches(exported):
    r = run_benchmark(exported, batch_sizes=(1, 512), engines=["ort"], threads=1, quick=True)
    assert r["header"]["batch_sizes"] == [1] and r["header"]["quick"]
    assert "ort" in format_table(r)


def test_unknown_engine_is_refused_with_the_known_names(exported):
    with pytest.raises(ValueError, match="known: " + ", ".join(ENGINE_NAMES)):
        run_benchmark(exported, batch_sizes=(1,), engines=["tensorflow"], quick=True)


def test_missing_exports_say_how_to_make_them(tiny_checkpoint, tmp_path):
    lonely = tmp_path / "lonely.pt"
    shutil.copy(tiny_checkpoint, lonely)
    with pytest.raises(RuntimeError, match="python -m export --checkpoint"):
        run_benchmark(lonely, batch_sizes=(1,), quick=True)


def test_time_calls_respects_min_calls_and_min_time():
    calls = []
    times = time_calls(lambda: calls.append(1), min_time_s=0.0, min_calls=7)
    assert len(times) == len(calls) == 7 and all(t >= 0 for t in times)
    start = time.perf_counter()
    times = time_calls(lambda: None, min_time_s=0.02, min_calls=1)
    assert time.perf_counter() - start >= 0.02 and len(times) > 1


def test_onnx_runtime_is_compared_with_pytorchs_fastest_engine(result):
    rows = [{"engine": e, "batch_size": b, "p50_ms": ms} for e, b, ms in
            [("eager", 1, 1.3), ("torch-compile", 1, 1.1), ("ort", 1, 0.4), ("eager", 8, 2.0),
             ("torchscript", 8, 2.5), ("ort", 8, 1.0)]]
    assert fastest_pytorch(rows) == {1: ("torch-compile", 1.1), 8: ("eager", 2.0)}
    assert "x best PyTorch" in format_table(result)
    # the optional AOTInductor package was not built for this copy: left out, and the header says why
    assert "aoti" not in result["header"]["engines"] and "pt2" in result["header"]["refused_exports"]


def test_torch_compile_rows_match_eager_and_report_the_compile_apart(exported):
    """torch.compile (inductor, freezing) really runs in the interleaved turns: a row per batch size, logits
    equal to eager's up to float noise, and the compiling first call reported apart from the timed calls."""
    r = run_benchmark(exported, batch_sizes=(1, 4), engines=["eager", "torch-compile"], threads=1,
                      min_time_s=0.01)
    rows = [row for row in r["rows"] if row["engine"] == "torch-compile"]
    assert [row["batch_size"] for row in rows] == [1, 4]
    for row in rows:
        assert row["max_abs_diff"] < 1e-3 and row["top1_agree"] == 1.0, row
        assert row["first_call_s"] > 10 * row["p50_ms"] / 1e3, row  # a compile, not a cached eager call
    assert fastest_pytorch(r["rows"])[1][0] in ("eager", "torch-compile")
