"""Decode step: any user input (path, bytes, PIL image, numpy array, tensor, FileData dict) -> grayscale and
alpha as float32 arrays in [0, 1], plus the factor from those arrays' pixels to the original image's pixels.

    from engine.preprocess.decode import decode
    img = decode("photo.jpg")   # Decoded(gray, dark, light, alpha, scale); alpha is None for opaque images
    part = decode_window("photo.jpg", (x0, y0, x1, y1), 2)  # a window of it, read again at 1/2 scale
    layer = decode(layer, alpha_only=True)  # a sketch layer: its alpha alone (the colour planes are None)

Sizes are checked from the header before any pixel is decoded (decompression bombs), EXIF orientation is
honoured, an iPhone's HEIC photo is read (pillow-heif's libheif: decoded upright, its rotation applied), a
large JPEG is decoded at reduced scale (PIL's draft() picks the DCT scale, OpenCV's libjpeg-turbo decodes at
it: libjpeg skips most of the work) and any image over SHRINK_PIXELS is reduced by an integer factor before
any float copy. Colour is kept as two
colour-aware planes beside the luma: `dark` (the darkest channel: blue or red ink on white paper is as
dark there as black ink) and `light` (the brightest channel, for light ink on a dark ground).
"""
from __future__ import annotations

import io
import math
import os

from dataclasses import dataclass

import cv2
import numpy as np
import pillow_heif
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

pillow_heif.register_heif_opener()  # PIL opens HEIC/HEIF (an iPhone's photos) from here on, in every caller

MAX_PIXELS = 40_000_000        # larger images are refused before they are decoded (decompression bombs)
SHRINK_PIXELS = 1 << 20        # larger images are box-reduced to about this size before any float copy
DRAFT_PIXELS = 180_000         # a JPEG over 4 MP is decoded at the DCT scale (1/2, 1/4, 1/8) nearest above this

Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # PIL itself refuses anything over 2x this


class PreprocessError(ValueError):
    """The input cannot be turned into a model input; the message says what the user should do."""


class EmptyInputError(PreprocessError):
    pass


def open_image(source, reduce: bool = False, factor: int | None = None) -> Image.Image:
    """Open a path, bytes or file object as a PIL image, refusing oversized or broken files clearly.

    reduce: let a JPEG over SHRINK_PIXELS decode at 1/2, 1/4 or 1/8 scale (libjpeg skips most of the
    work), still at least about SHRINK_PIXELS, or DRAFT_PIXELS for a phone photo over 4 MP (a 3.3 MB 12 MP
    photo: 1/8, about 37-45 ms on the 2-core EPYC, most of it Huffman decoding); the image's info["full_size"]
    keeps the file's own size. factor: decode a JPEG at this reduction (1, 2, 4 or 8) instead."""
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    except UnidentifiedImageError as e:
        raise PreprocessError("that file is not an image PIL can read; "
                              "upload a PNG, JPEG, HEIC, WebP, GIF or BMP") from e
    except Image.DecompressionBombError as e:
        raise PreprocessError(f"the image is too large (over {MAX_PIXELS / 1e6:.0f} megapixels); scale it down") from e
    except (FileNotFoundError, IsADirectoryError) as e:
        raise PreprocessError(f"no image file at {source}") from e
    try:
        check_size(img)
    except PreprocessError:
        img.close()
        raise
    img.info["full_size"] = img.size
    w, h = img.size  # a phone photo (over 4 MP) decodes far smaller: its digit is still 40+ px tall there
    if factor is None:
        factor = _shrink_factor(w, h, DRAFT_PIXELS if w * h > 4 * SHRINK_PIXELS else SHRINK_PIXELS) if reduce else 1
    jpeg = img.format in ("JPEG", "MPO")  # MPO: a phone's JPEG with a depth map or preview after it
    if factor > 1 and jpeg and img.mode in ("L", "RGB", "CMYK"):
        img.draft(img.mode, (img.size[0] // factor, img.size[1] // factor))
    if jpeg and img.mode in ("L", "RGB"):
        fast = _decode_jpeg(source, img)
        if fast is not None:
            return fast
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
        img.close()  # else the file stays open as long as its error is kept (the served app kept one)
        why = " ".join(str(e).split())  # libheif's reasons end in a line break
        raise PreprocessError(f"the image file is damaged or truncated ({why}); try saving it again") from e
    return img


_REDUCED = {1: 0, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
            8: cv2.IMREAD_REDUCED_GRAYSCALE_8}  # OpenCV's flags for libjpeg's DCT scales


def _decode_jpeg(source, img: Image.Image) -> Image.Image | None:
    """The pixels of the JPEG `img` (opened by PIL, its draft scale set) decoded by OpenCV instead: the same
    libjpeg-turbo decode with the same settings, so the same pixels, in one call on the whole buffer (PIL
    feeds its decoder in chunks: a 12 MP photo at 1/8 scale took ~45 ms there, ~38 ms here on the 2-core
    EPYC). -> a PIL image like PIL's own (its info, EXIF orientation included, and file name kept; EXIF not yet
    applied), or None where PIL decodes it: a file object, or a file that does not end as a JPEG does (truncated:
    PIL says so, where OpenCV would fill the rest grey)."""
    if isinstance(source, (bytes, bytearray)):
        data = np.frombuffer(source, np.uint8)
    elif isinstance(source, (str, os.PathLike)):
        data = np.fromfile(source, np.uint8)
    else:
        return None
    if data[-2:].tobytes() != b"\xff\xd9":
        return None
    scale = img.decoderconfig[0] if img.decoderconfig else 1
    flags = (cv2.IMREAD_GRAYSCALE if img.mode == "L" else cv2.IMREAD_COLOR_RGB) | _REDUCED.get(scale, 0)
    a = cv2.imdecode(data, flags | cv2.IMREAD_IGNORE_ORIENTATION)
    if a is None or a.shape[1::-1] != img.size:
        return None
    out = Image.fromarray(a)
    out.info = img.info
    out.filename = getattr(img, "filename", "")  # the re-read of small writing (preprocess.extract_ink) opens it
    img.close()
    return out


def check_size(img: Image.Image) -> None:
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise PreprocessError(f"the image is {w}x{h} = {w * h / 1e6:.0f} megapixels; the limit is "
                              f"{MAX_PIXELS / 1e6:.0f} megapixels, scale it down first")
    if w < 1 or h < 1:
        raise PreprocessError("the image is empty (zero pixels)")


def _shrink_factor(w: int, h: int, pixels: int = SHRINK_PIXELS) -> int:
    return max(1, math.ceil(math.sqrt(w * h / pixels)))


def shrink(img: Image.Image) -> tuple[Image.Image, int]:
    """Box-reduce an image of more than SHRINK_PIXELS by an integer factor -> (image, factor). A 12 MP phone
    photo then costs ~0.1 s and tens of MB instead of seconds and a gigabyte of float copies, and the digit,
    which ends up 20 px tall, loses nothing: strokes wider than the factor keep their full strength. The
    factor follows the area, not the longest side, so a 3000x20 strip keeps its 20 rows."""
    factor = _shrink_factor(*img.size)
    if factor <= 1:
        return img, 1
    if img.mode in ("1", "P", "PA"):  # modes reduce() does not take
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "L")
    elif img.mode.startswith("I;16"):
        img = img.convert("I")
    return img.reduce(factor), factor


@dataclass
class Decoded:
    """One decoded image: float32 HxW planes in [0, 1] (dark/light equal gray for a grayscale image), the
    alpha plane or None, and scale = original (EXIF-upright) image pixels per plane pixel. Decoded with
    alpha_only, an image with an alpha plane has no colour planes (None)."""
    gray: np.ndarray | None
    dark: np.ndarray | None
    light: np.ndarray | None
    alpha: np.ndarray | None
    scale: float
    dark_ink: bool = True  # the ink's polarity, as ink.ink_from_planes took it (False: light ink on a dark ground;
                           # a crop's, ink.with_margin sets from its edge first)
    margin: int = 0        # plane pixels of paper added around the image (ink.with_margin: a digit cropped to its ink)
    contrast: np.ndarray | None = None  # each pixel's contrast against the paper, as ink.ink_from_planes
                                        # thresholded it (ink.stands_out judges the writing on it)


def _float(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) * np.float32(1 / 255) if a.dtype == np.uint8 else a


def _planes(a: np.ndarray, alpha: np.ndarray | None, scale: float, alpha_only: bool = False) -> Decoded:
    """uint8 (0..255) or float32 (0..1) HxW or HxWx3 -> Decoded (OpenCV per-pixel channel min/max: numpy's
    reduction over the last axis of a 12 MP photo's copy takes ~100 ms). alpha_only: where there is an alpha
    plane, skip the colour planes (a sketch layer's strokes are its alpha: half the sketchpad's decoding)."""
    if alpha_only and alpha is not None:
        return Decoded(None, None, None, alpha, scale)
    a = np.ascontiguousarray(a)
    if a.ndim == 2:
        g = _float(a)
        return Decoded(g, g, g, alpha, scale)
    r, g, b = cv2.split(a)
    return Decoded(_float(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)), _float(cv2.min(cv2.min(r, g), b)),
                   _float(cv2.max(cv2.max(r, g), b)), alpha, scale)


def _to_gray_alpha(img: Image.Image, alpha_only: bool = False) -> Decoded:
    """Any PIL image, whatever the mode (16-bit, palette, CMYK...) -> Decoded."""
    full_w, full_h = img.info.get("full_size", img.size)  # before a reduced-scale JPEG decode
    upright = ImageOps.exif_transpose(img)  # photos taken sideways
    turned = upright.size != img.size
    img, _ = shrink(upright)  # huge photos
    scale = (full_h if turned else full_w) / img.size[0]
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        return _planes((a - lo) / (hi - lo) if hi > lo else np.zeros_like(a), None, scale)
    if img.mode == "P" and "transparency" in img.info or img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(img.convert("RGBA"))
        return _planes(rgba[..., :3], _float(rgba[..., 3]), scale, alpha_only)
    if img.mode in ("L", "1"):
        return _planes(np.asarray(img.convert("L")), None, scale)
    return _planes(np.asarray(img.convert("RGB")), None, scale)


def _from_array(a: np.ndarray, alpha_only: bool = False) -> Decoded:
    a = np.asarray(a)
    factor = 1
    if a.dtype == np.uint8 and a.ndim >= 2 and a.shape[0] * a.shape[1] > SHRINK_PIXELS and (
            a.ndim == 2 or a.ndim == 3 and a.shape[2] in (1, 2, 3, 4)):  # e.g. a huge sketch layer
        small, factor = shrink(Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a))
        a = np.asarray(small)
    if a.dtype.kind == "f":
        a = a.astype(np.float32)
        if a.max(initial=0) > 1.0:
            a = a / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    elif a.dtype != np.uint8:
        a = a.astype(np.float32) / 255.0
    if a.ndim == 2:
        return _planes(a, None, float(factor))
    if a.ndim == 3 and a.shape[2] in (1, 2, 3, 4):
        color, alpha = (a[..., :-1], _float(a[..., -1])) if a.shape[2] in (2, 4) else (a, None)
        return _planes(color if color.shape[2] == 3 else color[..., 0], alpha, float(factor), alpha_only)
    raise PreprocessError(f"expected an image array of shape HxW, HxWx3 or HxWx4, got {a.shape}")


def decode(value, alpha_only: bool = False) -> Decoded:
    """Any supported single image -> Decoded (alpha_only: see Decoded)."""
    if isinstance(value, Image.Image):
        check_size(value)
        return _to_gray_alpha(value, alpha_only)
    if isinstance(value, np.ndarray):
        return _from_array(value, alpha_only)
    if isinstance(value, torch.Tensor):
        return _from_array(value.detach().cpu().numpy(), alpha_only)
    if isinstance(value, (str, os.PathLike, bytes, bytearray)):
        return _to_gray_alpha(open_image(value, reduce=True), alpha_only)
    if isinstance(value, dict) and "path" in value:  # a gradio FileData-like dict
        return _to_gray_alpha(open_image(value["path"], reduce=True), alpha_only)
    raise PreprocessError(f"unsupported image input of type {type(value).__name__}")


def decode_window(value, box: tuple[int, int, int, int], factor: int = 1) -> Decoded:
    """Part of an input read again more finely than decode() read the whole: box = (x0, y0, x1, y1) in
    original (EXIF-upright) pixels, x0 and y0 multiples of factor; a file decoded at 1/factor of its size
    (a JPEG at that DCT scale: factor 1, 2, 4 or 8), an image or array in memory at full size (factor must be
    1 then). The Decoded covers the box; its scale is the file's pixels per plane pixel."""
    x0, y0, x1, y1 = box
    if isinstance(value, (str, os.PathLike, bytes, bytearray)) or isinstance(value, dict) and "path" in value:
        img = open_image(value["path"] if isinstance(value, dict) else value, factor=factor)
        full_w, full_h = img.info["full_size"]
        upright = ImageOps.exif_transpose(img)
        turned = upright.size != img.size
        s = (full_h if turned else full_w) / upright.size[0]  # the DCT scale the decoder chose
        if s < factor:  # not a JPEG, or one the decoder read at a finer scale: reduce the window itself
            window = upright.crop((round(x0 / s), round(y0 / s), round(x1 / s), round(y1 / s)))
            window = window.reduce(max(1, round(factor / s)))
        else:
            window = upright.crop((x0 // factor, y0 // factor, -(-x1 // factor), -(-y1 // factor)))
        d = _to_gray_alpha(window)
        d.scale = float(factor)
        return d
    if factor != 1:
        raise ValueError("an image or array in memory is read again at full size (factor 1)")
    if isinstance(value, Image.Image):
        return _to_gray_alpha(ImageOps.exif_transpose(value).crop(box))
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return _from_array(np.asarray(value)[y0:y1, x0:x1])
