"""Your own images: any torchvision ImageFolder tree as an MNIST-like dataset.

    python -m engine.train --dataset folder:path/to/shapes --epochs 15 --out runs/shapes.pt
    python -m engine.evaluate --checkpoint runs/shapes.pt      # scores the same held-out images

    from engine.folder import load_folder_split
    train = load_folder_split("path/to/shapes", train=True)    # Split(images uint8 (N,1,28,28), ...)

Layouts (class names are the sub-folder names, sorted, exactly as ImageFolder assigns them):

    PATH/train/CLASS/*.png and PATH/test/CLASS/*.png   the separate test part (or val/) is used as is
    PATH/CLASS/*.png                                   a held-out test split is made, see below
    PATH/train/CLASS/*.png without test/ or val/       likewise, held out from train/

The held-out split is stratified and deterministic: in every class HOLDOUT_FRACTION (20 %) of the images,
at least one when the class has two or more, are held out: those whose sha256 of "HOLDOUT_SEED:CLASS/file"
(seed 0) sorts first. It depends only on the file names (not on the folder's location, the machine or
library versions), so train and test never overlap, every DDP rank sees the same split, `engine.evaluate`
and the exporter re-create it later, and adding images moves few others across.

Every image, whatever its size, mode or colour, goes through `engine.preprocess.preprocess`, the function
the app applies to an upload (ink by polarity or alpha, crop, 20 px box, stroke weight, centre of mass),
so training sees what the app will feed the model. Files that cannot be used (not an image, damaged, or
blank) are skipped with one warning that names them; a class left with no usable image is an error.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch

from engine.data import Split
from engine.preprocess import EmptyInputError, PreprocessError, preprocess

HOLDOUT_FRACTION = 0.2   # share of each class held out as the test split when there is no test/ folder
HOLDOUT_SEED = 0         # salts the hash that picks the held-out images
TEST_DIRS = ("test", "val")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif", ".heic", ".heif",
              ".avif")
LAYOUT_HELP = ("--dataset folder:PATH needs one sub-folder of images per class (PATH/CLASS/*.png), or "
               "PATH/train/CLASS/ and PATH/test/CLASS/")


class FolderDatasetError(ValueError):
    """The folder cannot be used as a dataset; the message says what to change."""


def _is_image_file(path: str) -> bool:
    # Hidden files are mostly editor and macOS debris ("._cat.png" resource forks), never images.
    name = Path(path).name
    return not name.startswith(".") and name.lower().endswith(EXTENSIONS)


def _image_folder(root: Path):
    """torchvision ImageFolder over `root`, with the errors reworded to say what to do."""
    from torchvision.datasets import ImageFolder

    try:
        ds = ImageFolder(str(root), loader=str, is_valid_file=_is_image_file, allow_empty=True)
    except FileNotFoundError as e:  # no class folders at all
        raise FolderDatasetError(f"no class folders in {root}. {LAYOUT_HELP}") from e
    counts = np.bincount(ds.targets, minlength=len(ds.classes))
    empty = [c for c, n in zip(ds.classes, counts) if n == 0]
    if empty:
        raise FolderDatasetError(
            f"class folder(s) {', '.join(empty)} in {root} hold no images (looked for "
            f"{', '.join(EXTENSIONS)}); add images there or remove the folder(s)")
    return ds


def _layout(root: Path) -> tuple[Path, Path | None]:
    """(folder with the training classes, folder with the test classes or None for a held-out split)."""
    if not root.is_dir():
        raise FolderDatasetError(f"no folder at {root}. {LAYOUT_HELP}")
    train = root / "train"
    if train.is_dir() and any(p.is_dir() for p in train.iterdir()):
        test = next((root / d for d in TEST_DIRS if (root / d).is_dir()), None)
        return train, test
    return root, None


def holdout_mask(samples: list[tuple[str, int]], root: Path, fraction: float = HOLDOUT_FRACTION,
                 seed: int = HOLDOUT_SEED) -> np.ndarray:
    """Boolean mask over ImageFolder samples: the held-out `fraction` of each class (at least 1 of 2+)."""
    def rank(i: int) -> str:
        relative = Path(samples[i][0]).relative_to(root).as_posix()
        return hashlib.sha256(f"{seed}:{relative}".encode()).hexdigest() + relative

    targets = np.array([t for _, t in samples])
    mask = np.zeros(len(samples), dtype=bool)
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        n_test = min(max(round(fraction * len(idx)), 1), len(idx) - 1)
        mask[sorted(idx, key=rank)[:n_test]] = True
    return mask


def _frames(samples: list[tuple[str, int]], root: Path) -> tuple[list[np.ndarray], list[int]]:
    frames, labels, skipped = [], [], []
    for path, label in samples:
        try:
            frames.append(preprocess(path)[1])  # uint8 (28, 28): what the app would feed the model
            labels.append(label)
        except EmptyInputError:
            skipped.append(f"{path} (blank: no ink stands out from the background)")
        except (PreprocessError, OSError) as e:
            skipped.append(f"{path} ({e})")
    if skipped:
        shown = "; ".join(skipped[:5]) + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        warnings.warn(f"skipped {len(skipped)} of {len(samples)} images in {root} that cannot be used: {shown}",
                      stacklevel=3)
    return frames, labels


def load_folder_split(path: str | Path, train: bool = True) -> Split:
    """The train or test part of an image-folder dataset as uint8 (N, 1, 28, 28) MNIST-like frames."""
    root = Path(path).expanduser()
    train_dir, test_dir = _layout(root)
    ds = _image_folder(train_dir)
    if len(ds.classes) < 2:
        raise FolderDatasetError(
            f"{train_dir} has only one class folder ({ds.classes[0]!r}); a classifier needs at least two. "
            f"{LAYOUT_HELP}")
    if test_dir is None:
        held_out = holdout_mask(ds.samples, train_dir)
        if not held_out.any():
            raise FolderDatasetError(f"too few images in {train_dir} to hold any out for testing: put at "
                                     f"least two images in each class folder, or add a test/ folder")
        samples = [s for s, h in zip(ds.samples, held_out) if h != train]
    elif train:
        samples = ds.samples
    else:
        test = _image_folder(test_dir)
        unknown = sorted(set(test.classes) - set(ds.classes))
        if unknown:
            raise FolderDatasetError(f"{test_dir} has class folder(s) {', '.join(unknown)} that {train_dir} "
                                     f"lacks; the test classes must be among the training classes")
        # Labels follow the training folder's class order, which the checkpoint stores.
        samples = [(p, ds.class_to_idx[test.classes[t]]) for p, t in test.samples]

    frames, labels = _frames(samples, root)
    if train:
        missing = sorted(set(ds.classes) - {ds.classes[t] for t in labels})
        if missing:
            raise FolderDatasetError(f"no usable training image left for class(es) {', '.join(missing)} "
                                     f"in {train_dir}; add readable images with visible content there")
    images = (torch.from_numpy(np.stack(frames)).unsqueeze(1) if frames
              else torch.empty(0, 1, 28, 28, dtype=torch.uint8))
    return Split(images.contiguous(), torch.tensor(labels, dtype=torch.long), list(ds.classes),
                 f"folder:{root}")
