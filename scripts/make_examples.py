"""Write the app's examples gallery: real test images as small PNGs in examples/.

    python scripts/make_examples.py [--data-dir DIR] [--out examples]

One MNIST test digit per class (0-9) and a few Fashion-MNIST test items, each the first test image of
its class, saved exactly as stored (28x28, light on dark), so the gallery is reproducible and tiny.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from engine.data import default_data_dir, load_dataset

FASHION_PICKS = ["Trouser", "Dress", "Sneaker", "Bag", "Ankle boot"]


def slug(class_name: str) -> str:
    """File-name form of a class name: "Ankle boot" -> "ankle_boot"."""
    return class_name.lower().replace(" ", "_").replace("/", "_")


def first_of_each(split, class_names: list[str]) -> dict[str, int]:
    """Index of the first test image of each named class."""
    labels = split.labels.tolist()
    return {name: labels.index(split.class_names.index(name)) for name in class_names}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=default_data_dir(),
                   help="folder holding MNIST/raw and FashionMNIST/raw (default: $DIGITS_DATA_DIR or data)")
    p.add_argument("--out", default="examples", help="output folder (default: examples)")
    args = p.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for dataset, prefix, picks in (("mnist", "mnist", None), ("fashion", "fashion", FASHION_PICKS)):
        split = load_dataset(dataset, args.data_dir, train=False, download=False)
        for name, i in first_of_each(split, picks or split.class_names).items():
            path = out / f"{prefix}_{slug(name)}.png"
            Image.fromarray(split.images[i, 0].numpy()).save(path, optimize=True)
            print(f"{path}: test image {i} ({name})")


if __name__ == "__main__":
    main()
