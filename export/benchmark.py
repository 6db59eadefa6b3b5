"""Benchmark PyTorch against ONNX Runtime on the same real test images: latency percentiles, throughput,
and the model's FLOP/s as a share of the machine's peak, measured in the same run.

    python -m export --checkpoint checkpoints/mnist_cnn.pt              # writes the exports timed here
    python -m export.benchmark --checkpoint checkpoints/mnist_cnn.pt
    python -m export.benchmark --checkpoint checkpoints/mnist_cnn.pt --threads 2 --json benchmarks/cpu.json \
        --csv benchmarks/cpu.csv --plot benchmarks/cpu.png
    python -m export.benchmark --checkpoint checkpoints/mnist_cnn.pt --quick  # a few seconds, small batches

From Python (the app's benchmark tab):

    from export.benchmark import run_benchmark, format_table
    result = run_benchmark("checkpoints/mnist_cnn.pt", quick=True)   # {"header": {...}, "rows": [...]}
    print(format_table(result))

How it times. Every engine gets the same input: the first `batch_size` test images of the checkpoint's
dataset, normalised with the checkpoint's own InputSpec. For each batch size all engines are warmed up,
then take turns for ROUNDS rounds (a short warm-up at each turn), so a burst of background load hits them
alike; inside a turn, each call is timed on its own with time.perf_counter until the turn's share of
`min_time_s` has passed. GPU calls synchronise the device before the clock stops, and ONNX Runtime on
CUDA uses I/O binding with inputs and outputs already on the device, so no host copies are timed.

    img_per_s   = batch_size / p50
    gflops      = counted model FLOPs per image (engine.models.count_flops) x batch_size / p50
    peak_share  = gflops / the peak of the same device and precision, measured in this run with a large
                  matrix product: fp32 with torch.mm, int8 with ONNX Runtime's MatMulInteger (the u8 x s8
                  kernels the int8 model runs on), fp16/bf16 on CUDA with torch.mm in that dtype.
    max_abs_diff, top1_agree: logits against PyTorch eager fp32 on the CPU, on the same images.
"""
from __future__ import annotations

import argparse
import copy
import csv
import datetime
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engine.checkpoint import build_model, load_checkpoint
from engine.data import load_dataset, to_input
from engine.models import count_flops
from engine.train import library_versions

DEFAULT_BATCH_SIZES = (1, 8, 64, 256, 1024)
COLUMNS = ["engine", "provider", "device", "batch_size", "threads", "p50_ms", "p90_ms", "p99_ms", "img_per_s",
           "gflops", "peak_share", "max_abs_diff"]
EXTRA_COLUMNS = ["precision", "top1_agree", "calls", "first_call_s"]  # first call: includes torch.compile's compile
ROUNDS = 3              # turns each engine takes per batch size
MIN_CALLS = 10          # timed calls per (engine, batch size), however long they take
WARMUP_CALLS = 3        # untimed calls before the first turn (ORT allocates its arenas, TorchScript profiles)
TURN_WARMUP_CALLS = 1   # untimed calls at the start of every turn (the other engine's threads wind down)
QUICK_MIN_TIME_S = 0.06
QUICK_MAX_BATCH = 64    # quick=True drops larger batch sizes, so the app's button answers in seconds

Step = Callable[[], object]  # one timed inference on a bound input; returns the logits (tensor or array)


# ----------------------------------------------------------------------------------------------------
# Engines: each binds an input batch once (outside the timing) and returns a step to call repeatedly


@dataclass
class Engine:
    name: str        # what `engines=` selects
    provider: str    # "torch" or the ONNX Runtime execution provider that really runs
    device: str      # "cpu" or "cuda"
    precision: str   # "fp32", "int8", "fp16", "bf16"
    prepare: Callable[[torch.Tensor], Step]


# name: (export it runs, ort_session provider or None for torch, device, precision)
ENGINE_SPECS = {
    "eager":           (None,          None,       "cpu",  "fp32"),
    "torchscript":     ("torchscript", None,       "cpu",  "fp32"),
    "ort":             ("onnx",        "cpu",      "cpu",  "fp32"),
    "ort-int8":        ("int8",        "cpu",      "cpu",  "int8"),
    "torch-compile":   (None,          "inductor", "cpu",  "fp32"),  # torch.compile, freezing on
    "torch-compile-max": (None,        "inductor", "cpu",  "fp32"),  # ... and mode="max-autotune"
    "aoti":            ("pt2",         None,       "cpu",  "fp32"),  # the AOTInductor package (--pt2)
    "eager-cuda":      (None,          None,       "cuda", "fp32"),
    "eager-cuda-bf16": (None,          None,       "cuda", "bf16"),
    "eager-cuda-fp16": (None,          None,       "cuda", "fp16"),
    "ort-cuda":        ("onnx",        "cuda",     "cuda", "fp32"),
    "ort-cuda-fp16":   ("fp16",        "cuda",     "cuda", "fp16"),
    "ort-tensorrt":    ("onnx",        "tensorrt", "cuda", "fp32"),
}
ENGINE_NAMES = list(ENGINE_SPECS)
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def available_engines() -> list[str]:
    """The engines this machine can run: the CPU ones always, the CUDA ones where a GPU and provider work."""
    import onnxruntime as ort

    from export.runtime import cuda_works

    names = ["eager", "torchscript", "ort", "ort-int8", "torch-compile", "torch-compile-max", "aoti"]
    if torch.cuda.is_available():
        names += ["eager-cuda", "eager-cuda-bf16", "eager-cuda-fp16"]
    if cuda_works():  # onnxruntime-gpu lists CUDA/TensorRT even without a GPU; this really runs a model
        names += ["ort-cuda", "ort-cuda-fp16"]
        if "TensorrtExecutionProvider" in ort.get_available_providers():
            names.append("ort-tensorrt")
    return names


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def torch_prepare(module: torch.nn.Module, device: str, dtype: torch.dtype) -> Callable[[torch.Tensor], Step]:
    """For a module already on `device` in `dtype`."""
    def prepare(x: torch.Tensor) -> Step:
        x = x.to(device=device, dtype=dtype)

        def step():
            y = module(x)
            _sync(device)
            return y
        return step
    return prepare


_NP_DTYPE = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def ort_prepare(sess, device: str) -> Callable[[torch.Tensor], Step]:
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    in_dtype, out_dtype = _NP_DTYPE[inp.type], _NP_DTYPE[out.type]
    if device == "cpu":
        def prepare(x: torch.Tensor) -> Step:
            feed = {inp.name: x.numpy().astype(in_dtype, copy=False)}
            return lambda: sess.run([out.name], feed)[0]
        return prepare

    def prepare_cuda(x: torch.Tensor) -> Step:
        # I/O binding to tensors that already live on the GPU: the timing holds the model, not copies.
        xd = x.to("cuda", dtype=torch.from_numpy(np.zeros(0, in_dtype)).dtype).contiguous()
        yd = torch.empty((x.shape[0], out.shape[1]), device="cuda",
                         dtype=torch.from_numpy(np.zeros(0, out_dtype)).dtype)
        io = sess.io_binding()
        io.bind_input(inp.name, "cuda", 0, in_dtype, tuple(xd.shape), xd.data_ptr())
        io.bind_output(out.name, "cuda", 0, out_dtype, tuple(yd.shape), yd.data_ptr())

        def step():
            sess.run_with_iobinding(io)
            torch.cuda.synchronize()
            return yd
        return step
    return prepare_cuda


def load_engine(name: str, checkpoint: str | os.PathLike, model: torch.nn.Module, threads: int) -> Engine:
    from export.runtime import artifact_paths, load_torchscript, ort_session

    kind, provider, device, precision = ENGINE_SPECS[name]
    if name in ("torch-compile", "torch-compile-max"):
        # Inductor with freezing (weights become constants, BatchNorm folds into the convolutions), one
        # static-shape graph per batch size: the compile happens in each batch size's first call, which
        # the rows report as first_call_s, apart from the timed calls. max-autotune also times Inductor's
        # own C++ GEMM templates against the library kernels for each matrix product and keeps the faster.
        mode = "max-autotune" if name == "torch-compile-max" else None
        module = torch.compile(copy.deepcopy(model), backend="inductor", mode=mode, dynamic=False)
        provider = "torch.compile inductor" + (" max-autotune" if mode else "")
        return Engine(name, provider, device, precision, torch_prepare(module, device, torch.float32))
    if kind == "pt2":
        from export.runtime import load_runtime
        module = load_runtime(checkpoint, "PyTorch AOTInductor").module  # refuses a foreign or stale package
        return Engine(name, "AOTInductor", device, precision, torch_prepare(module, device, torch.float32))
    if kind is None:
        module = copy.deepcopy(model).to(device, TORCH_DTYPES[precision])
        return Engine(name, "torch", device, precision, torch_prepare(module, device, TORCH_DTYPES[precision]))
    path = artifact_paths(checkpoint)[kind]
    if kind == "torchscript":
        module = load_torchscript(path)[0].to(device)
        return Engine(name, "torch.jit", device, precision, torch_prepare(module, device, torch.float32))
    sess = ort_session(path, provider=provider, threads=threads)  # raises if the provider does not really run
    return Engine(name, sess.get_providers()[0], device, precision, ort_prepare(sess, device))


# ----------------------------------------------------------------------------------------------------
# Timing


def time_calls(step: Step, min_time_s: float, min_calls: int = 1) -> list[float]:
    """Call `step` until `min_time_s` has passed and at least `min_calls` were made; seconds per call."""
    times = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def _peak_cpu_int8_step(n: int, threads: int, tmp: Path) -> Step:
    """u8 x s8 -> s32 matrix product in ONNX Runtime (MLAS uses VNNI/AMX where the CPU has them)."""
    import onnx
    from onnx import TensorProto, helper

    from export.runtime import ort_session

    rng = np.random.default_rng(0)
    b = helper.make_tensor("B", TensorProto.INT8, [n, n], rng.integers(-128, 128, (n, n), np.int8).tobytes(),
                           raw=True)
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "peak_int8",
                              [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])], [b])
    path = tmp / f"matmul_int8_{n}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    sess = ort_session(path, provider="cpu", threads=threads)
    feed = {"A": rng.integers(0, 256, (n, n), np.uint8)}
    return lambda: sess.run(None, feed)


def measure_peaks(precisions: set[tuple[str, str]], threads: int, min_time_s: float, quick: bool) -> dict:
    """GFLOP/s of a large matrix product per (device, precision): the best over a few sizes, median call."""
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for device, precision in sorted(precisions):
            if device == "cpu":
                sizes = (1024,) if quick else (1024, 2048)
            else:
                sizes = (4096,) if quick else (4096, 8192)
            best, how = 0.0, ""
            for n in sizes:
                if device == "cpu" and precision == "int8":
                    step, lib = _peak_cpu_int8_step(n, threads, Path(tmp)), "onnxruntime MatMulInteger u8xs8"
                else:
                    dtype = TORCH_DTYPES[precision]
                    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
                    c = torch.empty(n, n, device=device, dtype=dtype)

                    def step(a=a, b=b, c=c):
                        torch.mm(a, b, out=c)
                        _sync(device)
                    lib = f"torch.mm {precision}"
                time_calls(step, 0.0, WARMUP_CALLS)
                gflops = 2 * n ** 3 / float(np.median(time_calls(step, min_time_s / len(sizes), 5))) / 1e9
                if gflops > best:
                    best, how = gflops, f"{lib} {n}x{n}"
            peaks[f"{device}/{precision}"] = {"gflops": round(best, 1), "how": how}
    return peaks


# ----------------------------------------------------------------------------------------------------
# The run


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass  # not Linux: the model name from platform is all we have
    info = {"cpu": cpu, "cpus": usable_cpus(),
            "cpu_features": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
                             if f in flags],
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return info


def versions() -> dict:
    import onnx
    import onnxruntime as ort
    return {**library_versions(), "onnx": onnx.__version__, "onnxruntime": ort.__version__,
            "numpy": np.__version__, "ort_providers": ort.get_available_providers()}


def _to_numpy(y) -> np.ndarray:
    return y.detach().float().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y, np.float32)


def _resolve_engines(engines, auto: list[str], refused: dict[str, str]) -> list[str]:
    """refused: {export kind: why} from export.runtime.refused_exports (and a .pt2 not built or not for
    this CPU); their engines are left out of the default."""
    offered = [e for e in auto if ENGINE_SPECS[e][0] not in refused]
    if engines is None:
        return offered
    engines = [engines] if isinstance(engines, str) else list(engines)
    unknown = [e for e in engines if e not in ENGINE_NAMES]
    if unknown:
        raise ValueError(f"unknown engine(s) {', '.join(unknown)}; known: {', '.join(ENGINE_NAMES)}")
    not_offered = [f"{e} ({refused[ENGINE_SPECS[e][0]]})" for e in engines if ENGINE_SPECS[e][0] in refused]
    if not_offered:
        raise ValueError(f"the export refused the file behind engine(s) {'; '.join(not_offered)}; "
                         f"available: {', '.join(offered)}")
    missing = [e for e in engines if e not in auto]
    if missing:
        raise ValueError(f"engine(s) {', '.join(missing)} cannot run here (no GPU or provider); "
                         f"available: {', '.join(auto)}")
    return engines


def run_benchmark(checkpoint, batch_sizes=DEFAULT_BATCH_SIZES, engines=None, threads=0, quick=False,
                  min_time_s=2.0, progress=None, *, data_dir=None) -> dict:
    """Time every engine at every batch size on the same inputs; {"header": {...}, "rows": [{...}, ...]}.

    engines: names from ENGINE_NAMES (default: all that this machine can run, see available_engines()).
    threads: CPU threads for torch and ONNX Runtime alike; 0 = every CPU this process may use.
    quick: about QUICK_MIN_TIME_S per cell, smaller peak matrices, batch sizes above QUICK_MAX_BATCH dropped.
    progress: called as progress(fraction_done, message), e.g. a gr.Progress.
    """
    from export.runtime import (MissingExportError, RefusedExportError, StaleExportError, check_exports,
                                load_runtime, refused_exports)

    problems = check_exports(checkpoint)  # the last problem says how to rebuild them
    if problems:
        error = MissingExportError if all("is missing" in p for p in problems[:-1]) else StaleExportError
        raise error(f"the exports of {checkpoint} cannot be benchmarked: {'; '.join(problems)}")
    threads = threads or usable_cpus()
    batch_sizes = sorted({int(b) for b in batch_sizes})
    if quick:
        batch_sizes = [b for b in batch_sizes if b <= QUICK_MAX_BATCH] or [1]
        min_time_s = min(min_time_s, QUICK_MIN_TIME_S)
    refused = refused_exports(checkpoint)
    try:
        load_runtime(checkpoint, "PyTorch AOTInductor")
    except RefusedExportError as e:  # optional package: not built, or built for another CPU
        refused.setdefault("pt2", str(e))
    auto = available_engines()
    if quick:  # the app's button: no engine that compiles for tens of seconds first
        auto = [e for e in auto if not e.startswith("torch-compile")]
    names = _resolve_engines(engines, auto, refused)
    progress = progress or (lambda fraction, message: None)

    ckpt = load_checkpoint(checkpoint)
    model, spec = build_model(ckpt)
    dataset = ckpt.get("config", {}).get("dataset", "mnist")
    split = load_dataset(dataset, data_dir, train=False, download=False)
    x_all = to_input(split.images[:max(batch_sizes)], spec.mean, spec.std).contiguous()
    if len(x_all) < max(batch_sizes):
        raise ValueError(f"the {dataset} test split has {len(x_all)} images; use batch sizes up to that")
    flops_per_image = count_flops(model, (1, *spec.shape))

    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    load_before = os.getloadavg()
    try:
        loaded = [load_engine(n, checkpoint, model, threads) for n in names]
        precisions = {(e.device, e.precision) for e in loaded} | {("cpu", "fp32")}
        measure = lambda: measure_peaks(precisions, threads, min_time_s, quick)
        progress(0.0, "measuring the peak")
        peaks_before = measure()
        cells = []  # (engine, batch size, seconds per call, logits, eager logits, first call's seconds)
        import torch._dynamo.config as dynamo_config
        import torch._inductor.config as inductor_config
        # Both compiled engines share the model's forward(), one static graph per batch size each: over
        # dynamo's default of 8 graphs per function the rest would silently run eager.
        with torch.inference_mode(), inductor_config.patch(freezing=True), \
                dynamo_config.patch(recompile_limit=max(8, 2 * len(batch_sizes) + 2)):
            for i, b in enumerate(batch_sizes):
                progress((i + 0.5) / (len(batch_sizes) + 1), f"batch size {b}")
                x = x_all[:b]
                reference = _to_numpy(model(x))
                steps = [e.prepare(x) for e in loaded]
                first, outputs = [], []
                for step in steps:
                    t0 = time.perf_counter()
                    outputs.append(_to_numpy(step()))
                    first.append(time.perf_counter() - t0)
                for step in steps:
                    time_calls(step, 0.0, WARMUP_CALLS)
                times: list[list[float]] = [[] for _ in loaded]
                for _ in range(ROUNDS):
                    for step, t in zip(steps, times):
                        time_calls(step, 0.0, TURN_WARMUP_CALLS)
                        t += time_calls(step, min_time_s / ROUNDS, -(-MIN_CALLS // ROUNDS))
                cells += [(e, b, np.array(t), y, reference, f) for e, y, t, f in zip(loaded, outputs, times, first)]
        progress(len(batch_sizes) / (len(batch_sizes) + 1), "measuring the peak again")
        peaks_after = measure()
        progress(1.0, "done")
    finally:
        torch.set_num_threads(saved_threads)

    # The peak is the better of the two measurements (before and after the engines), both kept for the record.
    peaks = {k: {**max(v, peaks_after[k], key=lambda p: p["gflops"]),
                 "before_after": [v["gflops"], peaks_after[k]["gflops"]]} for k, v in peaks_before.items()}
    rows = [make_row(e, b, threads, t, y, ref, flops_per_image, peaks, f) for e, b, t, y, ref, f in cells]
    header = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(), "versions": versions(),
        "checkpoint": str(checkpoint), "model": {"name": ckpt["model_name"], "args": ckpt["model_args"]},
        "dataset": dataset, "inputs": f"first batch_size images of the {dataset} test split",
        "mflops_per_image": round(flops_per_image / 1e6, 3),
        "threads": threads, "batch_sizes": batch_sizes, "engines": names, "quick": quick,
        "refused_exports": refused,
        "min_time_s": min_time_s, "rounds": ROUNDS,
        "peaks": peaks, "peak_gflops": peaks["cpu/fp32"]["gflops"],
        "ort_session_options": f"export.runtime.ort_session: intra_op_num_threads={threads}, inter_op 1, "
                               f"ORT_SEQUENTIAL, graph_optimization_level ORT_ENABLE_ALL",
        "definitions": {"img_per_s": "batch_size / p50", "gflops": "counted model FLOPs x batch_size / p50",
                        "peak_share": "gflops / peaks[device/precision] (int8 rows: the int8 peak)",
                        "max_abs_diff, top1_agree": "logits against eager fp32 on the CPU, same images"},
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "columns": COLUMNS + EXTRA_COLUMNS,
    }
    return {"header": header, "rows": rows}


def _figures(x: float, n: int = 6) -> float:
    """x to n significant figures: a 40 us call keeps its precision (rounded to 0.1 us, as it was, its
    images/s disagreed with its p50 by over 1e-3)."""
    return float(f"{x:.{n}g}")


def make_row(engine: Engine, batch_size: int, threads: int, times_s: np.ndarray, logits: np.ndarray,
             reference: np.ndarray, flops_per_image: int, peaks: dict, first_call_s: float = 0.0) -> dict:
    p50, p90, p99 = np.percentile(times_s, [50, 90, 99])
    gflops = flops_per_image * batch_size / p50 / 1e9
    peak = peaks.get(f"{engine.device}/{engine.precision}") or peaks[f"{engine.device}/fp32"]
    return {
        "engine": engine.name, "provider": engine.provider, "device": engine.device, "batch_size": batch_size,
        "threads": threads, "p50_ms": _figures(p50 * 1e3), "p90_ms": _figures(p90 * 1e3),
        "p99_ms": _figures(p99 * 1e3), "img_per_s": _figures(batch_size / p50), "gflops": _figures(gflops, 4),
        "peak_share": _figures(gflops / peak["gflops"], 4),
        "max_abs_diff": _figures(float(np.abs(logits - reference).max()), 3),
        "precision": engine.precision,
        "top1_agree": round(float((logits.argmax(1) == reference.argmax(1)).mean()), 4),
        "calls": len(times_s), "first_call_s": round(first_call_s, 4),
    }


# ----------------------------------------------------------------------------------------------------
# Output: table, JSON, CSV, plot


PYTORCH_CPU_ENGINES = ("eager", "torchscript", "torch-compile", "torch-compile-max", "aoti")


def fastest_pytorch(rows: list[dict]) -> dict[int, tuple[str, float]]:
    """{batch size: (engine, p50 ms)} of PyTorch's fastest CPU engine in this run (eager, TorchScript,
    torch.compile, AOTInductor), the fair yardstick for ONNX Runtime next to eager."""
    best: dict[int, tuple[str, float]] = {}
    for r in rows:
        b = r["batch_size"]
        if r["engine"] in PYTORCH_CPU_ENGINES and (b not in best or r["p50_ms"] < best[b][1]):
            best[b] = (r["engine"], r["p50_ms"])
    return best


def format_table(result: dict) -> str:
    h = result["header"]
    peaks = ", ".join(f"{k} {v['gflops']:.0f} GFLOP/s ({v['how']})" for k, v in h["peaks"].items())
    m = h["machine"]
    lines = [f"{h['model']['name']} {h['model']['args']} from {h['checkpoint']}: "
             f"{h['mflops_per_image']} MFLOP/image, {h['threads']} threads",
             f"machine: {m['cpu']} ({m['cpus']} CPUs, {' '.join(m['cpu_features'])})"
             + (f", GPU {m['gpu']}" if m["gpu"] else ""),
             f"peak: {peaks}",
             "% peak: against the peak of the row's device and precision (int8 rows: the int8 peak)",
             f"load average before/after: {h['load_average_before_after']}", ""]
    eager_p50 = {r["batch_size"]: r["p50_ms"] for r in result["rows"] if r["engine"] == "eager"}
    fastest_torch = fastest_pytorch(result["rows"])
    head = ["engine", "provider", "device", "prec", "batch", "p50 ms", "p90 ms", "p99 ms", "img/s", "x eager",
            "x best PyTorch", "GFLOP/s", "% peak", "max|diff|", "top1 agree", "1st call s"]
    body = [[r["engine"], r["provider"], r["device"], r["precision"], str(r["batch_size"]),
             f"{r['p50_ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['img_per_s']:,.0f}",
             f"{eager_p50[r['batch_size']] / r['p50_ms']:.2f}" if r["batch_size"] in eager_p50 else "-",
             f"{fastest_torch[r['batch_size']][1] / r['p50_ms']:.2f}" if r["batch_size"] in fastest_torch else "-",
             f"{r['gflops']:.1f}", f"{100 * r['peak_share']:.1f}", f"{r['max_abs_diff']:.2g}",
             f"{100 * r['top1_agree']:.1f}%", f"{r.get('first_call_s', 0):.2f}"]
            for r in sorted(result["rows"], key=lambda r: (r["batch_size"], h["engines"].index(r["engine"])))]
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    left = 3  # text columns are left-aligned, numbers right-aligned
    fmt = lambda row: "  ".join(c.ljust(w) if i <= left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    lines += [fmt(head), fmt(["-" * w for w in widths])]
    previous = None
    for row in body:
        if previous is not None and row[4] != previous:
            lines.append("")
        lines.append(fmt(row))
        previous = row[4]
    return "\n".join(lines)


def write_json(result: dict, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2) + "\n")


def write_csv(result: dict, path) -> None:
    """Flat rows; the header's fields come first as `# key: json` comment lines (pandas: comment='#')."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        for key, value in result["header"].items():
            f.write(f"# {key}: {json.dumps(value)}\n")
        writer = csv.DictWriter(f, fieldnames=COLUMNS + EXTRA_COLUMNS)
        writer.writeheader()
        writer.writerows(result["rows"])


def plot_results(result: dict, path) -> None:
    """p50 latency and throughput against batch size, one line per engine (log-log)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = result["header"]
    fig, (ax_lat, ax_thr) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in h["engines"]:
        rows = sorted((r for r in result["rows"] if r["engine"] == name), key=lambda r: r["batch_size"])
        bs = [r["batch_size"] for r in rows]
        ax_lat.plot(bs, [r["p50_ms"] for r in rows], marker="o", label=name)
        ax_thr.plot(bs, [r["img_per_s"] for r in rows], marker="o", label=name)
    for ax, ylabel in ((ax_lat, "p50 latency (ms)"), (ax_thr, "throughput (images/s, batch / p50)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_thr.legend(fontsize=8)
    m = h["machine"]
    fig.suptitle(f"{h['model']['name']} ({h['mflops_per_image']} MFLOP/image) on {m['cpu']}, {h['threads']} threads"
                 + (f", {m['gpu']}" if m["gpu"] else ""), fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------
# CLI


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/mnist_cnn.pt",
                   help="checkpoint whose exports sit beside it (default: checkpoints/mnist_cnn.pt)")
    p.add_argument("--batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)),
                   help=f"comma-separated batch sizes (default: {','.join(map(str, DEFAULT_BATCH_SIZES))})")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch and ONNX Runtime; 0 = all CPUs this process may use (default: 0)")
    p.add_argument("--engines", default=None,
                   help=f"comma-separated subset of {','.join(ENGINE_NAMES)} (default: all this machine can run)")
    p.add_argument("--min-time", type=float, default=2.0,
                   help="seconds of timed calls per engine and batch size (default: 2.0)")
    p.add_argument("--quick", action="store_true",
                   help=f"a few seconds in all: {QUICK_MIN_TIME_S} s per cell, batch sizes up to "
                        f"{QUICK_MAX_BATCH} (default: off)")
    p.add_argument("--data-dir", default=None,
                   help="folder with MNIST/ and FashionMNIST/ (default: $DIGITS_DATA_DIR or ./data)")
    p.add_argument("--json", default=None, help="write header and rows as JSON here (default: none)")
    p.add_argument("--csv", default=None, help="write the rows as CSV here, header as # lines (default: none)")
    p.add_argument("--plot", default=None, help="write a PNG of latency and throughput here (default: none)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = get_args(argv)
    engines = args.engines.split(",") if args.engines else None
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]

    def progress(fraction, message):
        print(f"[{100 * fraction:3.0f}%] {message}", flush=True)

    result = run_benchmark(args.checkpoint, batch_sizes, engines, args.threads, args.quick, args.min_time,
                           progress, data_dir=args.data_dir)
    print(format_table(result))
    for path, write in ((args.json, write_json), (args.csv, write_csv), (args.plot, plot_results)):
        if path:
            write(result, path)
            print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
