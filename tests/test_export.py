"""Export and runtime: parity with eager for every registered model, dynamic batch, metadata round trip,
stale/missing/mismatched exports refused, atomic writes, and an independent ONNX implementation.

    pytest tests/test_export.py
"""
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import export.__main__ as export_cli
from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.data import to_input
from engine.models import InputSpec, create_model, list_models
from export.convert import convert_fp16, export_onnx, export_torchscript, quantize_int8
from export.runtime import (BACKEND_NAMES, CUDA_BACKENDS, MissingExportError, RefusedExportError, OrtRuntime, StaleExportError, TorchRuntime,
                            artifact_paths, available_backends, check_exports, export_metadata,
                            load_runtime, load_torchscript, ort_session, pt2_path, read_metadata,
                            read_pt2_metadata, refusals_path, refused_exports)
from export.verify import accuracy_check, parity


@pytest.fixture(scope="module")
def test_x(mnist_test) -> np.ndarray:
    spec = InputSpec()
    return to_input(mnist_test.images[:300], spec.mean, spec.std).numpy()


@pytest.fixture(scope="module")
def calib_x(data_dir) -> np.ndarray:
    """A few training images: int8 calibration never sees test images."""
    from engine.data import load_dataset
    spec = InputSpec()
    train = load_dataset("mnist", data_dir, train=True, download=False)
    return to_input(train.images[:64], spec.mean, spec.std).numpy()


@pytest.fixture(scope="module")
def exported(tiny_exported) -> Path:
    """The tiny trained cnn exported by the CLI, verified on the full 10k test set; returns the checkpoint
    (tests/conftest.py, shared with tests/test_benchmark.py: tests that change files use copy_exports)."""
    return tiny_exported


def copy_exports(ckpt: Path, dest: Path) -> Path:
    """A private copy of a checkpoint and its exports (and the record of refused ones), for tests that
    modify them."""
    for path in [ckpt, *artifact_paths(ckpt).values(), refusals_path(ckpt)]:
        if path.is_file():
            shutil.copy(path, dest / path.name)
    return dest / ckpt.name


def written(ckpt: Path) -> dict[str, Path]:
    """The exports present beside `ckpt`. Whether int8 passes its accuracy check depends on the CPU's
    int8 kernels, so tests take whichever variants the exporter wrote and never assume int8 is one."""
    refused = refused_exports(ckpt)
    assert not {"torchscript", "onnx"} & set(refused), refused  # fp32 never depends on the CPU
    present = {kind: path for kind, path in artifact_paths(ckpt).items() if path.is_file()}
    assert set(present) | set(refused) == set(artifact_paths(ckpt)), "an export is neither written nor refused"
    return present


# ----------------------------------------------------------------------------------------------------
# Parity for every registered model


@pytest.mark.parametrize("name", list_models())
def test_every_model_exports_with_parity_and_dynamic_batch(name, tmp_path, test_x, calib_x):
    torch.manual_seed(0)
    model = create_model(name).eval()
    spec = InputSpec()
    ckpt = {"model_name": name, "model_args": {}, "input_spec": spec.to_dict(), "config": {"dataset": "mnist"}}
    meta = export_metadata(ckpt, "0" * 64, "fp32")
    ts_path, onnx_path = tmp_path / "m.torchscript.pt", tmp_path / "m.onnx"
    export_torchscript(model, spec, meta, ts_path)
    export_onnx(model, spec, meta, onnx_path)

    proto = onnx.load(str(onnx_path))
    assert [i.name for i in proto.graph.input] == ["image"] and [o.name for o in proto.graph.output] == ["logits"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]  # symbolic batch axis
    assert proto.opset_import[0].version >= 18
    assert not any(t.external_data for t in proto.graph.initializer)  # one self-contained file

    common = dict(spec=spec, checkpoint=tmp_path)
    eager = TorchRuntime(model, name="PyTorch", path=tmp_path, **common)
    runtimes = [TorchRuntime(load_torchscript(ts_path)[0], name="TorchScript", path=ts_path, **common),
                OrtRuntime(ort_session(onnx_path), name="ONNX Runtime", path=onnx_path, **common)]
    for rt in runtimes:
        for n in (1, 7, 256):  # each batch size in one call: the batch axis must really be dynamic
            x = test_x[:n]
            check = parity(f"{rt.name} batch {n}", eager.predict_logits(x), rt.predict_logits(x))
            assert check.ok, check

    # The reduced-precision variants build and keep the dynamic batch (their accuracy is checked on a
    # trained model by the CLI test below; an untrained model's near-tied logits say nothing).
    int8_path, fp16_path = tmp_path / "m.int8.onnx", tmp_path / "m.fp16.onnx"
    quantize_int8(onnx_path, calib_x, export_metadata(ckpt, "0" * 64, "int8"), int8_path)
    convert_fp16(onnx_path, export_metadata(ckpt, "0" * 64, "fp16"), fp16_path)
    for path in (int8_path, fp16_path):
        rt = OrtRuntime(ort_session(path), name=path.name, path=path, **common)
        assert [rt.predict_logits(test_x[:n]).shape for n in (1, 7)] == [(1, 10), (7, 10)]


def test_accuracy_check_tolerance_follows_the_sample_size():
    def judged(n: int, lost: int, gained: int = 0) -> bool:
        labels = np.zeros(n, dtype=np.int64)
        fp32 = np.tile(np.array([[1.0, 0.0]], np.float32), (n, 1))
        fp32[n - gained:] = [0.0, 1.0]  # fp32 wrong on the last `gained` images, the variant right there
        out = np.tile(np.array([[1.0, 0.0]], np.float32), (n, 1))
        out[:lost] = [0.0, 1.0]
        return accuracy_check("int8", labels, fp32, out).ok

    assert judged(10_000, 10)            # 0.1 pp on 10,000 images
    assert not judged(10_000, 50)        # 0.5 pp lost on 10,000 images is a real loss
    assert judged(300, 4)                # 4 flips of 300 (the tiny checkpoint's int8 on an AVX2 CPU): noise
    assert not judged(300, 11)           # 11 of 300: far off
    assert judged(10_000, 100, 100)      # as many gained as lost: no accuracy change, 98 % agreement
    assert not judged(10_000, 400, 400)  # same accuracy, but a different model (92 % agreement)


# ----------------------------------------------------------------------------------------------------
# The CLI end to end, metadata, and the runtime interface


def test_cli_writes_verified_exports_with_metadata(exported, tiny_checkpoint):
    ckpt = load_checkpoint(exported)
    for kind, path in written(exported).items():
        meta = read_metadata(path)
        assert meta["checkpoint_sha256"] == export_cli.file_sha256(exported)
        assert meta["model_name"] == "cnn"
        spec = InputSpec.from_dict(ckpt["input_spec"])
        restored = InputSpec(*json.loads(meta["input_size"]), mean=float(meta["mean"]),
                             std=float(meta["std"]), class_names=json.loads(meta["class_names"]))
        assert restored == spec
    for kind, precision in (("onnx", "fp32"), ("int8", "int8"), ("fp16", "fp16")):
        if kind in written(exported):
            assert read_metadata(artifact_paths(exported)[kind])["precision"] == precision
    assert check_exports(exported) == []  # a refused variant is not offered, not a problem
    assert not list(exported.parent.glob("*.tmp")) and not list(exported.parent.glob(".export-*"))


def test_every_backend_agrees_with_pytorch(exported, test_x):
    assert available_backends()[:4] == BACKEND_NAMES[:4]
    if not torch.cuda.is_available():
        assert available_backends() == [b for b in BACKEND_NAMES if b not in CUDA_BACKENDS]
    x = test_x[:64]
    ref = load_runtime(exported, "PyTorch").predict_proba(x)
    for backend in available_backends()[1:]:
        try:
            rt = load_runtime(exported, backend)
        except RefusedExportError as e:  # int8 refused on this CPU, or the optional .pt2 not built here
            assert backend in ("ONNX Runtime int8", "PyTorch AOTInductor"), e
            continue
        probs = rt.predict_proba(x)
        assert probs.shape == (64, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
        agree = (probs.argmax(1) == ref.argmax(1)).mean()
        assert agree >= (1.0 if "int8" not in backend else 0.95), backend


def test_runtime_is_thread_safe(exported, test_x):
    rt = load_runtime(exported, "ONNX Runtime")
    expected = rt.predict_proba(test_x[:16])
    results, errors = [], []

    def worker(i):
        try:
            for _ in range(5):
                results.append(np.array_equal(rt.predict_proba(test_x[:16]), expected))
        except Exception as e:  # surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(results) == 40 and all(results)


def test_runtime_rejects_bad_input_and_backend(exported):
    rt = load_runtime(exported, "ONNX Runtime")
    with pytest.raises(ValueError, match="preprocess"):
        rt.predict_proba(np.zeros((1, 28, 28), np.float32))
    with pytest.raises(ValueError, match="choose one of"):
        load_runtime(exported, "TensorFlow")
    if "ONNX Runtime CUDA" not in available_backends():
        with pytest.raises(RuntimeError, match="CUDA"):
            load_runtime(exported, "ONNX Runtime CUDA")


def test_onnx_reference_evaluator_agrees_with_onnx_runtime(exported, test_x):
    """onnx.reference is an independent (numpy) implementation of the ONNX operators."""
    from onnx.reference import ReferenceEvaluator
    path = artifact_paths(exported)["onnx"]
    ref = ReferenceEvaluator(str(path)).run(["logits"], {"image": test_x[:4]})[0]
    ort_out = load_runtime(exported, "ONNX Runtime").predict_logits(test_x[:4])
    assert np.abs(ref - ort_out).max() <= 1e-4
    assert (ref.argmax(1) == ort_out.argmax(1)).all()


# ----------------------------------------------------------------------------------------------------
# Stale, missing and mismatched exports


def test_stale_export_is_refused_with_the_rebuild_command(exported, tmp_path):
    ckpt_path = copy_exports(exported, tmp_path)
    ckpt = load_checkpoint(ckpt_path)
    ckpt["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    save_checkpoint(ckpt_path, {k: v for k, v in ckpt.items() if k != "format"})  # "re-trained"

    problems = check_exports(ckpt_path)
    # a refused variant's record belongs to the old checkpoint: now it is simply missing
    assert len(problems) == len(artifact_paths(ckpt_path)) + 1
    assert "changed since the export" in problems[0]
    assert f"python -m export --checkpoint {ckpt_path}" in problems[-1]
    assert export_cli.main(["--checkpoint", str(ckpt_path), "--check"]) == 1
    backends = ["TorchScript", "ONNX Runtime"] + (["ONNX Runtime int8"] if "int8" in written(exported) else [])
    for backend in backends:
        with pytest.raises(StaleExportError, match=f"python -m export --checkpoint {ckpt_path}"):
            load_runtime(ckpt_path, backend)
    load_runtime(ckpt_path, "PyTorch")  # the checkpoint itself is always current


def test_export_with_mismatched_metadata_is_refused(exported, tmp_path):
    ckpt_path = copy_exports(exported, tmp_path)
    onnx_path = artifact_paths(ckpt_path)["onnx"]
    model = onnx.load(str(onnx_path))
    for prop in model.metadata_props:
        if prop.key == "class_names":
            prop.value = '["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", ' \
                         '"Sneaker", "Bag", "Ankle boot"]'
    onnx.save(model, str(onnx_path))
    with pytest.raises(StaleExportError, match="class_names"):
        load_runtime(ckpt_path, "ONNX Runtime")
    assert any("class_names" in p for p in check_exports(ckpt_path))
    paths = artifact_paths(ckpt_path)
    shutil.copy(artifact_paths(exported)["onnx"], paths["int8"])  # an fp32 file where int8 belongs
    with pytest.raises(StaleExportError, match="precision"):
        load_runtime(ckpt_path, "ONNX Runtime int8")


def test_missing_export_says_how_to_build_it(tiny_checkpoint, exported, tmp_path):
    ckpt_path = tmp_path / "fresh.pt"
    shutil.copy(tiny_checkpoint, ckpt_path)
    with pytest.raises(MissingExportError, match=f"python -m export --checkpoint {ckpt_path}"):
        load_runtime(ckpt_path, "ONNX Runtime int8")
    assert len(check_exports(ckpt_path)) == len(artifact_paths(ckpt_path)) + 1
    # The same checkpoint with its exports in another folder (--out-dir) is found and accepted there.
    same = tmp_path / exported.name
    shutil.copy(exported, same)
    assert check_exports(same, out_dir=exported.parent) == []
    load_runtime(same, "ONNX Runtime", out_dir=exported.parent)
    assert f"--out-dir {tmp_path}" in check_exports(same, out_dir=tmp_path)[-1]


# ----------------------------------------------------------------------------------------------------
# Atomic writes: a failed or interrupted export leaves the previous files byte-identical


def _snapshot(ckpt_path: Path) -> dict[str, bytes]:
    return {kind: path.read_bytes() for kind, path in written(ckpt_path).items()}


def test_interrupted_export_leaves_previous_artifacts_intact(exported, tmp_path, monkeypatch, data_dir):
    ckpt_path = copy_exports(exported, tmp_path)
    before = _snapshot(ckpt_path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated interruption while converting to fp16")

    monkeypatch.setattr(export_cli, "convert_fp16", crash)
    with pytest.raises(KeyboardInterrupt):
        export_cli.export_checkpoint(ckpt_path, data_dir=data_dir, calibration_images=100,
                                     max_test_images=300, speed_repeats=0)
    assert _snapshot(ckpt_path) == before
    assert not list(tmp_path.glob("*.tmp"))


def test_failed_verification_exits_nonzero_and_replaces_nothing(exported, tmp_path, monkeypatch, data_dir,
                                                                capsys):
    ckpt_path = copy_exports(exported, tmp_path)
    before = _snapshot(ckpt_path)
    real_export_onnx = export_cli.export_onnx

    def export_wrong_weights(model, *args, **kwargs):  # an exporter bug: the graph drifts from eager
        broken = create_model("cnn", width=8).eval()
        broken.load_state_dict({k: v * 1.05 if v.is_floating_point() else v
                                for k, v in model.state_dict().items()})
        real_export_onnx(broken, *args, **kwargs)

    monkeypatch.setattr(export_cli, "export_onnx", export_wrong_weights)
    rc = export_cli.main(["--checkpoint", str(ckpt_path), "--data-dir", data_dir, "--max-test-images", "300",
                          "--calibration-images", "100", "--speed-repeats", "0"])
    assert rc == 1
    assert "[FAIL] onnx: ONNX Runtime vs eager PyTorch" in capsys.readouterr().err
    assert _snapshot(ckpt_path) == before


def test_a_failing_variant_is_refused_alone_and_strict_refuses_all(exported, tmp_path, monkeypatch, data_dir,
                                                                   capsys):
    ckpt_path = copy_exports(exported, tmp_path)
    before = _snapshot(ckpt_path)
    real_quantize = export_cli.quantize_int8

    def quantize_badly(fp32_path, calibration, *args, **kwargs):  # activation ranges 100x too narrow
        real_quantize(fp32_path, calibration * 0.01, *args, **kwargs)

    def no_fp16(*args, **kwargs):
        raise RuntimeError("simulated converter bug")

    monkeypatch.setattr(export_cli, "quantize_int8", quantize_badly)
    monkeypatch.setattr(export_cli, "convert_fp16", no_fp16)
    args = ["--checkpoint", str(ckpt_path), "--data-dir", data_dir, "--max-test-images", "300",
            "--calibration-images", "100", "--speed-repeats", "0"]
    assert export_cli.main([*args, "--strict"]) == 1  # all or nothing: the fp32 files are not replaced either
    assert "int8" in capsys.readouterr().err and _snapshot(ckpt_path) == before

    assert export_cli.main(args) == 0
    out = capsys.readouterr().out
    assert "int8        REFUSED" in out and "fp16        REFUSED" in out and "refused fp16, int8" in out
    paths = artifact_paths(ckpt_path)
    assert paths["onnx"].is_file() and paths["torchscript"].is_file()
    assert not paths["int8"].exists() and not paths["fp16"].exists()  # the previous files were removed
    refused = refused_exports(ckpt_path)
    assert "accuracy" in refused["int8"] and "simulated converter bug" in refused["fp16"]
    assert check_exports(ckpt_path) == []  # refused is "not offered", not "missing"
    with pytest.raises(MissingExportError, match="refused .*accuracy"):
        load_runtime(ckpt_path, "ONNX Runtime int8")
    assert export_cli.main(["--checkpoint", str(ckpt_path), "--check"]) == 0
    assert "int8: refused at export" in capsys.readouterr().out

    monkeypatch.undo()  # a later export rewrites the record: only what it refused (int8 may be, on some CPU)
    assert export_cli.main(args) == 0
    assert paths["fp16"].is_file() and "fp16" not in refused_exports(ckpt_path)
    assert refusals_path(ckpt_path).exists() == (not paths["int8"].is_file())


def test_a_pt2_packages_instruction_set_is_checked_part_by_part(monkeypatch):
    """AOTInductor records a CPU with VNNI as "AVX512 AVX512_VNNI" (and with AMX, "... AMX_TILE"): every part
    must be on this CPU. Such a package was refused on the very CPU that built it, as an unknown set."""
    from export.runtime import pt2_isa_problem

    caps = {k: True for k in torch.cpu.get_capabilities()}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    assert pt2_isa_problem({"AOTI_CPU_ISA": "AVX512 AVX512_VNNI"}) is None
    assert pt2_isa_problem({"AOTI_CPU_ISA": "AVX512 AVX512_VNNI AMX_TILE"}) is None
    caps["amx_tile"] = False
    assert "lacks amx_tile" in pt2_isa_problem({"AOTI_CPU_ISA": "AVX512 AVX512_VNNI AMX_TILE"})
    caps["avx512_vnni"] = False
    assert "lacks avx512_vnni" in pt2_isa_problem({"AOTI_CPU_ISA": "AVX512 AVX512_VNNI"})
    assert pt2_isa_problem({"AOTI_CPU_ISA": "AVX512"}) is None
    assert "does not know" in pt2_isa_problem({"AOTI_CPU_ISA": "AVX512 AVX10"})


def test_pt2_package_is_verified_and_never_loaded_on_a_cpu_it_was_not_built_for(exported, tmp_path, data_dir,
                                                                                 test_x, monkeypatch, capsys):
    """The one AOTInductor compile of the suite (the tiny cnn; tens of seconds on 2 cores)."""
    ckpt_path = copy_exports(exported, tmp_path)
    assert export_cli.main(["--checkpoint", str(ckpt_path), "--data-dir", data_dir, "--max-test-images", "300",
                            "--calibration-images", "100", "--speed-repeats", "0", "--pt2"]) == 0
    out = capsys.readouterr().out
    assert "[ok] PyTorch AOTInductor vs eager PyTorch, batch 256" in out
    path = pt2_path(ckpt_path)
    meta = read_pt2_metadata(path)
    assert meta["checkpoint_sha256"] == export_cli.file_sha256(ckpt_path) and meta["AOTI_CPU_ISA"]
    assert check_exports(ckpt_path) == []
    rt = load_runtime(ckpt_path, "PyTorch AOTInductor")
    eager = load_runtime(ckpt_path, "PyTorch")
    for n in (1, 7, 256):  # dynamic batch
        x = np.resize(test_x, (n, *test_x.shape[1:]))
        assert np.abs(rt.predict_logits(x) - eager.predict_logits(x)).max() <= 1e-4

    # The same package on a CPU without what it was built for (an AVX-512 Xeon's package on an AVX2
    # EPYC, here an AVX2 package on a CPU with nothing): refused before its native code is loaded.
    caps = {k: False for k in torch.cpu.get_capabilities()}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    with pytest.raises(RefusedExportError, match="cannot run on this CPU .*--pt2"):
        load_runtime(ckpt_path, "PyTorch AOTInductor")
    monkeypatch.undo()

    ckpt = load_checkpoint(ckpt_path)  # re-trained: the package is stale like any other export
    ckpt["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    save_checkpoint(ckpt_path, {k: v for k, v in ckpt.items() if k != "format"})
    assert any(p.startswith("pt2:") and "changed since the export" in p for p in check_exports(ckpt_path))
    with pytest.raises(StaleExportError, match="--pt2"):
        load_runtime(ckpt_path, "PyTorch AOTInductor")
