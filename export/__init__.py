"""Turn checkpoints into verified TorchScript and ONNX (fp32, int8, fp16) exports, and load any backend
through one runtime interface (export.runtime). Run `python -m export --help` for the command."""
