"""Verify step of the number segmentation: is a candidate piece of a line one whole digit, or a fragment of
one, or two digits run together? A small CNN looks at the piece in its place on the line (so it sees whether
ink goes on past a cut) and answers in log-odds; engine.preprocess.segment adds that to the reading model's
own score of the piece. It never reads the digit: that stays with the user's model.

    from engine.preprocess.verify import view, whole_logodds
    v = view(line_ink, piece_ink, origin, box, digit_h)  # float32 (2, 32, 48): the line, the piece, around it
    z = whole_logodds(np.stack(views))                   # (n,) log-odds that each piece is one whole digit

Trained only on MNIST's training digits, written as touching and apart lines by engine.render; rebuilt by
`python scripts/train_whole_digit.py` (about 30 minutes on 2 idle CPU cores), which writes WEIGHTS and their
ONNX export, which whole_logodds runs with ONNX Runtime on one thread: a few small views are less work than a
thread pool's hand-offs, and torch's pool and ONNX Runtime's (the reading model's) would contend for the
cores. The export names the sha256 of the weights it was made from; an export of other weights is refused.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

VIEW_HW = (32, 48)      # rows, columns of the view
VIEW_DIGIT = 20         # the line's digit height in the view, in pixels (MNIST's glyph box)
WEIGHTS = Path(__file__).with_name("whole_digit.pt")
ONNX = WEIGHTS.with_suffix(".onnx")
SOURCE_KEY = "weights_sha256"  # ONNX metadata: the sha256 of the WEIGHTS file it was exported from


class WholeDigitNet(nn.Module):
    """(n, 2, 32, 48) views -> (n,) log-odds of one whole digit. Channel 0: the line's ink around the piece,
    channel 1: the piece's own ink."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(2, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1),
                                    nn.Conv2d(16, 32, 3, padding=1)])
        self.fc1 = nn.Linear(32 * 4 * 6, 32)
        self.fc2 = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:  # (n, c, h, w) -> (n, c', h/2, w/2)
            x = F.max_pool2d(F.relu(conv(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))[:, 0]


class Verifier(nn.Module):
    """Several WholeDigitNets trained alike from different seeds; their log-odds averaged. One net's answers on
    the pieces that decide touching digits swing with its training seed (a '1' drawn into its neighbour), and
    the average is steadier than any one of them."""

    def __init__(self, members: int = 2):
        super().__init__()
        self.members = nn.ModuleList([WholeDigitNet() for _ in range(members)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def view(line: np.ndarray, piece_ink: np.ndarray, origin: tuple[int, int], box: tuple[int, int, int, int],
         digit_h: int) -> np.ndarray:
    """The verifier's input for one piece: a window of the line centred on the piece's box, scaled so the
    line's digit height is VIEW_DIGIT pixels; channel 0 all the line's ink, channel 1 the piece's (piece_ink's
    top-left corner at `origin` = (x, y) in the line)."""
    rows, cols = VIEW_HW
    s = VIEW_DIGIT / digit_h
    wx, wy = int(round(cols / s)), int(round(rows / s))
    x0 = int(round((box[0] + box[2]) / 2 - wx / 2))
    y0 = int(round((box[1] + box[3]) / 2 - wy / 2))
    out = np.zeros((wy, wx, 2), np.float32)  # channels last: both shrunk in one call, each as on its own
    _paste(out[..., 0], line, x0, y0)
    _paste(out[..., 1], piece_ink, x0 - origin[0], y0 - origin[1])
    return cv2.resize(out, (cols, rows), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)


def _paste(dst: np.ndarray, src: np.ndarray, x0: int, y0: int) -> None:
    """dst = the window of src whose top-left corner is (x0, y0) in src, zero outside src."""
    h, w = dst.shape
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + w, src.shape[1]), min(y0 + h, src.shape[0])
    if sx1 > sx0 and sy1 > sy0:
        dst[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = src[sy0:sy1, sx0:sx1]


def weights_sha256(path: Path = WEIGHTS) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _session(weights: Path, onnx_path: Path):
    import onnxruntime as ort

    for f in (weights, onnx_path):
        if not f.exists():
            raise FileNotFoundError(f"{f} is missing; rebuild it with `python scripts/train_whole_digit.py`")
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), sess_options=so, providers=["CPUExecutionProvider"])
    if session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY) != weights_sha256(weights):
        raise RuntimeError(f"{onnx_path} was exported from other weights than {weights}; export it again with "
                           f"`python scripts/train_whole_digit.py --export-only`")
    return session


_sessions: dict = {}


def whole_logodds(views: np.ndarray) -> np.ndarray:
    """(n, 2, 32, 48) views -> (n,) float64 log-odds that each piece is one whole digit (ONNX, loaded once)."""
    key = (WEIGHTS, ONNX)
    if key not in _sessions:
        _sessions[key] = _session(*key)
    return _sessions[key].run(None, {"views": np.ascontiguousarray(views, np.float32)})[0].astype(np.float64)


def load_net(weights: Path = WEIGHTS) -> Verifier:
    """The verifier as a torch module (for export and tests), in float32."""
    state = torch.load(weights, weights_only=True)
    net = Verifier(len({k.split(".")[1] for k in state}))
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.eval()


def export_onnx(weights: Path = WEIGHTS, out: Path = ONNX) -> None:
    """WEIGHTS -> their ONNX export (dynamic batch, one file), naming the weights' sha256."""
    import onnx

    n = torch.export.Dim("n", min=1)
    program = torch.onnx.export(load_net(weights), (torch.zeros(2, 2, *VIEW_HW),), None, dynamo=True,
                                input_names=["views"], output_names=["logodds"], dynamic_shapes=({0: n},),
                                external_data=False, optimize=True, verbose=False)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {SOURCE_KEY: weights_sha256(weights)})
    onnx.checker.check_model(proto, full_check=True)
    tmp = out.with_suffix(".onnx.tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(out)  # never a half-written export
