"""Datasets as device-resident tensors, and augmentation as batched tensor ops.

    from engine.data import load_dataset, TensorLoader
    train = load_dataset("mnist", data_dir, train=True)   # Split(images uint8 (N,1,28,28), labels, ...)

MNIST-sized sets fit in memory many times over, so the whole set lives on the training device and a
batch is an index into it: no DataLoader workers, no per-sample Python.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

DATA_DIR_ENV = "DIGITS_DATA_DIR"

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGIT_CLASSES = [str(i) for i in range(10)]


def default_data_dir() -> str:
    return os.environ.get(DATA_DIR_ENV, "data")


@dataclass
class Split:
    images: torch.Tensor      # (N, 1, 28, 28) uint8, 0 = background, 255 = ink
    labels: torch.Tensor      # (N,) int64
    class_names: list[str]
    name: str

    def __len__(self) -> int:
        return len(self.labels)


def _torchvision_split(cls, root: str, train: bool, download: bool):
    """Read a torchvision IDX dataset from `root`, downloading it only if it is missing."""
    try:
        return cls(root, train=train, download=False)
    except RuntimeError:
        pass  # not there yet
    raw = Path(root) / cls.__name__ / "raw"
    expected = [Path(url).name.removesuffix(".gz") for url, _ in cls.resources]
    where = f"{raw.resolve()} (expected files: {', '.join(expected)})"
    if not download:
        raise FileNotFoundError(f"{cls.__name__} not found in {where}. Pass --data-dir pointing at a "
                                f"folder that holds {cls.__name__}/raw, or allow downloading.")
    try:
        return cls(root, train=train, download=True)
    except Exception as e:  # torchvision tries several mirrors, then raises its own error
        raise RuntimeError(f"could not download {cls.__name__} into {where}: {e}. If this machine is "
                           f"offline, copy the raw IDX files there (or set {DATA_DIR_ENV} / --data-dir "
                           f"to a folder that has them).") from e


def load_dataset(name: str, data_dir: str | None = None, train: bool = True,
                 download: bool = True) -> Split:
    """`name` is 'mnist', 'fashion' or 'folder:PATH' (an ImageFolder tree, see engine.folder)."""
    from torchvision import datasets

    data_dir = data_dir or default_data_dir()
    if name == "mnist":
        ds, classes = _torchvision_split(datasets.MNIST, data_dir, train, download), DIGIT_CLASSES
    elif name in ("fashion", "fashion-mnist", "fashion_mnist"):
        ds, classes = _torchvision_split(datasets.FashionMNIST, data_dir, train, download), FASHION_CLASSES
    elif name.startswith("folder:"):
        from engine.folder import load_folder_split
        return load_folder_split(name.removeprefix("folder:"), train=train)
    else:
        raise ValueError(f"unknown dataset {name!r}; use 'mnist', 'fashion' or 'folder:PATH'")
    return Split(ds.data.unsqueeze(1).contiguous(), ds.targets.long(), list(classes), name)


# ----------------------------------------------------------------------------------------------------
# Loader


class TensorLoader:
    """Shuffled mini-batches from tensors that already sit on the device.

    With `world_size > 1` each rank sees its own interleaved shard of one shared permutation (the
    same scheme as DistributedSampler), so ranks never train on the same image in an epoch.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool,
                 seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 lines: torch.Tensor | None = None):
        self.images, self.labels, self.lines = images, labels, lines  # lines: centre_lines(images), or None
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = len(self.labels)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            idx = torch.randperm(n, generator=g)
        else:
            idx = torch.arange(n)
        if self.world_size > 1:
            per_rank = n // self.world_size  # equal shards keep DDP ranks in lock-step
            idx = idx[self.rank: per_rank * self.world_size: self.world_size]
        return idx.to(self.images.device)

    def __len__(self) -> int:
        n = len(self.labels) // self.world_size
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        idx = self._indices()
        for b in range(len(self)):
            sel = idx[b * self.batch_size:(b + 1) * self.batch_size]
            yield (self.images[sel], self.labels[sel]) + (() if self.lines is None else (self.lines[sel],))


# ----------------------------------------------------------------------------------------------------
# Augmentation on whole batches


@dataclass
class AugmentConfig:
    rotate_deg: float = 0.0   # uniform in +-rotate_deg
    scale: float = 0.0        # zoom uniform in 1 +- scale
    shear: float = 0.0        # shear factor uniform in +-shear
    translate_px: float = 0.0  # shift uniform in +-translate_px pixels, each axis
    stroke: float = 0.0       # blend towards a dilated (thicker) or eroded (thinner) image, up to this much
    hflip: bool = False
    erase_px: int = 0         # cutout: zero a random square of this side, with probability 0.5
    pen: float = 0.0          # share of digits redrawn along their centre line with a round pen of one width

    @property
    def enabled(self) -> bool:
        return any((self.rotate_deg, self.scale, self.shear, self.translate_px, self.stroke,
                    self.hflip, self.erase_px, self.pen))


AUGMENT_PRESETS = {
    # Handwriting: people tilt, squash and shift digits and draw with thinner or thicker pens.
    "digits": AugmentConfig(rotate_deg=12, scale=0.12, shear=0.15, translate_px=2.5, stroke=0.6),
    # ... and half of them as a sketchpad or a ballpoint draws them: MNIST's pens press harder or softer
    # along a stroke, a finger on a screen or a ballpoint does not (trains on centre_lines: see pen_redraw).
    "pen": AugmentConfig(rotate_deg=12, scale=0.12, shear=0.15, translate_px=2.5, stroke=0.6, pen=0.5),
    # Clothing photos are upright and centred; left/right is arbitrary.
    "fashion": AugmentConfig(rotate_deg=4, scale=0.06, translate_px=2.0, hflip=True, erase_px=8),
    "none": AugmentConfig(),
}


def thin(ink: torch.Tensor) -> torch.Tensor:
    """Zhang-Suen thinning of a batch of binary maps (N, 1, H, W): each stroke's one-pixel-wide centre line."""
    img = F.pad(ink.to(torch.uint8), (1, 1, 1, 1))
    H, W = img.shape[-2:]
    changed = True
    while changed:
        changed = False
        for step in range(2):
            q = F.pad(img, (1, 1, 1, 1))
            p = [q[..., 1 + dy:1 + dy + H, 1 + dx:1 + dx + W] for dy, dx in
                 ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))]  # P2..P9
            n = sum(p)
            transitions = sum(((p[i] == 0) & (p[(i + 1) % 8] == 1)).to(torch.uint8) for i in range(8))
            if step == 0:
                cond = ((p[0] & p[2] & p[4]) == 0) & ((p[2] & p[4] & p[6]) == 0)
            else:
                cond = ((p[0] & p[2] & p[6]) == 0) & ((p[0] & p[4] & p[6]) == 0)
            remove = (img == 1) & (n >= 2) & (n <= 6) & (transitions == 1) & cond
            if remove.any():
                img = img.masked_fill(remove, 0)
                changed = True
    return img[..., 1:-1, 1:-1].bool()


def centre_lines(images_u8: torch.Tensor, chunk: int = 2000) -> torch.Tensor:
    """uint8 digits (N, 1, H, W) -> bool (N, 1, 2H, 2W): their centre lines, thinned at twice the size (at
    28x28 thinning eats the ends of bold strokes). About 2 minutes for MNIST's 60,000 on one CPU core."""
    out = []
    for i in range(0, len(images_u8), chunk):
        big = F.interpolate(images_u8[i:i + chunk].float() / 255.0, scale_factor=2, mode="bilinear",
                            align_corners=False)
        out.append(thin(big > 0.4))
    return torch.cat(out) if out else torch.zeros(0, 1, *(2 * s for s in images_u8.shape[-2:]), dtype=torch.bool)


_PLUS = torch.tensor([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float32).view(1, 1, 3, 3)


def pen_redraw(lines: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Centre lines (N, 1, 2H, 2W) -> float (N, 1, H, W) in [0, 1]: each traced with a round pen of radius 1, 2
    or 3 pixels (radius: (N,) ints) at twice the size, area-averaged back (strokes 1.5-3.5 px wide at H x W:
    about the range that framing brings a sketch's stroke weight to)."""
    out, grown = lines.float(), []
    for k in range(3):  # a plus, then a square, then a plus again: ever rounder pens
        out = (F.conv2d(out, _PLUS.to(out.device), padding=1) > 0).float() if k % 2 == 0 else F.max_pool2d(out, 3, 1, 1)
        grown.append(out)
    traced = torch.stack(grown)[radius.long().clamp(1, 3) - 1, torch.arange(len(lines), device=lines.device)]
    return F.avg_pool2d(traced, 2)


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None,
            lines: torch.Tensor | None = None) -> torch.Tensor:
    """Random pen, affine, stroke weight, flip and cutout for a float batch (B, C, H, W) in [0, 1].
    lines: the batch's centre_lines, needed when cfg.pen is set."""
    if not cfg.enabled:
        return x
    B, _, H, W = x.shape
    dev = x.device

    def u(*shape):  # uniform in [-1, 1), drawn on CPU so results do not depend on the device
        return (torch.rand(*shape, generator=gen) * 2 - 1).to(dev)

    if cfg.pen:
        if lines is None:
            raise ValueError("augment with pen needs the batch's centre lines (engine.data.centre_lines)")
        redraw = u(B) < 2 * cfg.pen - 1
        radius = ((u(B) + 1) * 1.5).long() + 1  # 1, 2 or 3
        x = torch.where(redraw.view(B, 1, 1, 1), pen_redraw(lines, radius).to(x.dtype), x)
    if cfg.rotate_deg or cfg.scale or cfg.shear or cfg.translate_px:
        a = u(B) * math.radians(cfg.rotate_deg)
        s = 1 + u(B) * cfg.scale
        sh = u(B) * cfg.shear
        t = u(B, 2) * cfg.translate_px * 2 / torch.tensor([W, H], device=dev)  # pixels -> [-1, 1] units
        cos, sin = torch.cos(a) / s, torch.sin(a) / s
        theta = torch.stack([torch.stack([cos, -sin + sh * cos, t[:, 0]], 1),
                             torch.stack([sin, cos + sh * sin, t[:, 1]], 1)], 1)  # (B, 2, 3)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.stroke:
        k = u(B, 1, 1, 1) * cfg.stroke
        thick = F.max_pool2d(x, 3, 1, 1)
        thin = -F.max_pool2d(-x, 3, 1, 1)
        x = torch.where(k > 0, x + k * (thick - x), x - k * (thin - x))
    if cfg.hflip:
        flip = (u(B) > 0).view(B, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
    if cfg.erase_px:
        cy, cx = ((u(B) + 1) / 2 * H).view(B, 1, 1, 1), ((u(B) + 1) / 2 * W).view(B, 1, 1, 1)
        ys = torch.arange(H, device=dev).view(1, 1, H, 1)
        xs = torch.arange(W, device=dev).view(1, 1, 1, W)
        half = cfg.erase_px / 2
        box = ((ys - cy).abs() < half) & ((xs - cx).abs() < half) & (u(B).view(B, 1, 1, 1) > 0)
        x = x.masked_fill(box, 0.0)
    return x


def to_input(images_u8: torch.Tensor, mean: float, std: float, dtype=torch.float32) -> torch.Tensor:
    """uint8 (B, 1, H, W) -> normalised float, as every backend expects."""
    return (images_u8.to(dtype) / 255.0 - mean) / std
