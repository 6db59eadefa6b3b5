"""Time engine.preprocess on what users send: a sketchpad drawing (560x560 RGBA layers, as the app's canvas
sends them) and a 12-megapixel phone JPEG (4000x3000, decoding included), and that JPEG's decoding alone
(at the reduced scale preprocessing reads it at: most of its time is libjpeg's Huffman decoding).

    python scripts/bench_preprocess.py            # p50/p90 over 50 calls each
    python scripts/bench_preprocess.py --n 200
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.data import default_data_dir, load_dataset  # noqa: E402
from engine.preprocess import open_image, preprocess  # noqa: E402
from engine.render import render  # noqa: E402


def timed(fn, n: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 90) * 1e3)


def phone_jpeg(digit_u8: np.ndarray, rng: np.random.Generator) -> bytes:
    """A phone photo as the renderer makes them (page, table, shadow, small digit), at 12 MP with sensor noise,
    saved at quality 90: a few MB like a real one (a flat synthetic page would compress to 0.2 MB and decode
    faster than any photo)."""
    small = np.asarray(render(digit_u8, "photo", rng).convert("RGB"))
    photo = np.asarray(Image.fromarray(small).resize((4000, 3000), Image.Resampling.BILINEAR), np.float32)
    photo = np.clip(photo + rng.normal(0, 6, photo.shape[:2])[..., None], 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50, help="calls per input (default: 50)")
    p.add_argument("--data-dir", default=default_data_dir())
    args = p.parse_args(argv)
    split = load_dataset("mnist", args.data_dir, train=False, download=False)
    digit = split.images[0, 0].numpy()
    rng = np.random.default_rng(0)
    sketch = render(digit, "sketch", rng)
    canvas = {k: (np.asarray(Image.fromarray(v).resize((560, 560))) if not isinstance(v, list) else
                  [np.asarray(Image.fromarray(a).resize((560, 560))) for a in v]) for k, v in sketch.items()}
    jpeg = phone_jpeg(digit, rng)
    for name, fn in (("sketchpad drawing 560x560", lambda: preprocess(canvas)),
                     (f"12 MP JPEG {len(jpeg) / 1e6:.1f} MB, decode included", lambda: preprocess(jpeg)),
                     ("  of which decoding it (1/8 scale)", lambda: open_image(jpeg, reduce=True))):
        p50, p90 = timed(fn, args.n)
        print(f"{name:40s} p50 {p50:6.1f} ms   p90 {p90:6.1f} ms")


if __name__ == "__main__":
    main()
