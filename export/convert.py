"""Checkpoint -> TorchScript, ONNX fp32, ONNX int8 (static QDQ) and ONNX fp16 files.

Each function writes exactly one file at the path it is given; export.__main__ hands them temporary
paths and renames the files into place only after every one of them passed verification.
"""
from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from engine.models import InputSpec
from export.runtime import INPUT_NAME, OUTPUT_NAME, TORCHSCRIPT_META

OPSET = 18


def _set_metadata(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)


def export_torchscript(model: torch.nn.Module, spec: InputSpec, meta: dict[str, str], path: Path) -> None:
    """Trace (every registered model is a fixed chain of tensor ops with no data-dependent control flow)
    and freeze, which inlines the weights and folds BatchNorm into the preceding convolutions."""
    example = torch.zeros(2, *spec.shape)
    checks = [(torch.randn(n, *spec.shape),) for n in (1, 7)]  # the batch size must not be baked in
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated", category=FutureWarning)
        # nn.GRU's argument checks compare sizes in Python; the trace keeps them as constants, which is
        # right for 28x28 input, and check_inputs plus verification prove the batch axis stays dynamic.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"torch\.nn\.modules\.rnn")
        traced = torch.jit.trace(model.eval(), example, check_inputs=checks)
        frozen = torch.jit.freeze(traced)
        torch.jit.save(frozen, str(path), _extra_files={TORCHSCRIPT_META: json.dumps(meta)})


def export_onnx(model: torch.nn.Module, spec: InputSpec, meta: dict[str, str], path: Path,
                opset: int = OPSET) -> None:
    """The dynamo exporter with a dynamic batch axis, metadata attached, one self-contained file."""
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        # The GRU's flat weight list is reassigned while tracing; harmless, and torch says so loudly.
        warnings.filterwarnings("ignore", message=r".*were assigned during export.*")
        warnings.filterwarnings("ignore", message=r".*_check_is_size.*", category=FutureWarning)
        program = torch.onnx.export(model.eval(), (torch.zeros(2, *spec.shape),), None, dynamo=True,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    opset_version=opset, dynamic_shapes=({0: batch},),
                                    external_data=False, optimize=True, verbose=False)
    proto = program.model_proto
    proto.doc_string = f"{meta['model_name']} image classifier exported from PyTorch"
    _set_metadata(proto, meta)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


class ImageCalibrationReader:
    """onnxruntime.quantization.CalibrationDataReader over normalised float batches."""

    def __init__(self, x: np.ndarray, batch_size: int = 100):
        self.batches = iter([x[i:i + batch_size] for i in range(0, len(x), batch_size)])

    def get_next(self) -> dict | None:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch}


CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def quantize_int8(fp32_path: Path, calibration: np.ndarray, meta: dict[str, str], path: Path,
                  method: str = "minmax") -> None:
    """Static int8 (QDQ) with ONNX Runtime's tooling.

    uint8 activations with int8 per-channel weights reduced to 7 bits (reduce_range), which ONNX Runtime's
    quantization guide prescribes for u8s8 on x86-64 CPUs without VNNI (AVX2, AVX-512 without VNNI): there
    its kernels multiply-add pairs of u8*s8 products into int16 (VPMADDUBSW), which saturates with full
    8-bit weights; 7-bit weights cannot overflow. Measured on an AMD EPYC (AVX2, no VNNI), 10,000 test
    images: fashion_cnn int8 lost 4.3 pp with full-range weights and 0.02 pp with reduce_range (int8
    activations, "S8S8", did no better: ONNX Runtime runs them as u8 on x86). VNNI CPUs lose one bit of
    weight precision for a file that is accurate everywhere. ONNX Runtime has no int8 GRU, so for the
    RNN only its final Gemm becomes int8 (the file is valid and verified, but barely faster).
    calibration: float32 (N, C, H, W) normalised *training* images.
    """
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quant_pre_process,
                                          quantize_static)

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ValueError(f"calibration method must be one of {', '.join(methods)}, got {method!r}")
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        # Shape inference plus graph optimisation (BatchNorm folded into Conv), so quantization sees the
        # graph ONNX Runtime will actually run.
        quant_pre_process(str(fp32_path), str(prepped))
        out = Path(tmp) / "int8.onnx"
        quantize_static(str(prepped), str(out), ImageCalibrationReader(calibration),
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method],
                        calibration_providers=["CPUExecutionProvider"],
                        # Gemm outputs stay float: every model ends in a Gemm, and logits rounded to 256
                        # levels flip near-tied top-1 predictions (an under-trained RNN lost 0.24 pp that
                        # way); ONNX Runtime's QGemm writes the float result directly, at no extra cost.
                        extra_options={"OpTypesToExcludeOutputQuantization": ["Gemm"]})
        model = onnx.load(str(out))
    meta = {**meta, "precision": "int8",
            "quantization": json.dumps({"format": "QDQ", "activations": "uint8",
                                        "weights": "int8 per-channel, 7-bit (reduce_range)",
                                        "gemm_outputs": "float",
                                        "calibration": method, "calibration_images": len(calibration)})}
    _set_metadata(model, meta)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def export_pt2(model: torch.nn.Module, spec: InputSpec, meta: dict[str, str], path: Path) -> None:
    """torch.export, then AOTInductor: a .pt2 package of C++ compiled for this machine's CPU (the ISA it
    was built for is recorded by AOTInductor as AOTI_CPU_ISA), with a dynamic batch axis. Takes tens of
    seconds (a C++ compiler runs), which is why it is opt-in: python -m export --pt2."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", message=r".*were assigned during export.*")
        warnings.filterwarnings("ignore", message=r".*_check_is_size.*", category=FutureWarning)
        program = torch.export.export(model.eval(), (torch.zeros(2, *spec.shape),), dynamic_shapes=({0: batch},))
        torch._inductor.aoti_compile_and_package(program, package_path=str(path),
                                                 inductor_configs={"aot_inductor.metadata": dict(meta)})


def convert_fp16(fp32_path: Path, meta: dict[str, str], path: Path) -> None:
    """fp16 weights and compute for CUDA, with float32 input and output (keep_io_types)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    # The converter appends the input Cast after the nodes that read it; ONNX requires topological order.
    OnnxModel(model).topological_sort()
    _set_metadata(model, {**meta, "precision": "fp16"})
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
