"""A class map as a response: predict's palette PNG and overlay JPEG (the same encoders, into
memory), COCO RLE per class, and Label Studio's BrushLabels RLE. Nothing is written to disk."""

from __future__ import annotations

import io

import numpy as np

from fastseg.classes import Classes
from fastseg.imaging.masks import encode_mask
from fastseg.inference.image_outputs import encode_overlay


def mask_png(labels: np.ndarray, classes: Classes) -> bytes:
    """The bytes `fastseg predict` writes for these labels `(H, W)` uint8."""
    buffer = io.BytesIO()
    encode_mask(buffer, labels, classes.palette())
    return buffer.getvalue()


def overlay_jpeg(image: np.ndarray, labels: np.ndarray, classes: Classes) -> bytes:
    """The bytes `fastseg predict --overlay` writes: `image` `(H, W, 3)` blended with its labels."""
    buffer = io.BytesIO()
    encode_overlay(buffer, image, labels, classes)
    return buffer.getvalue()


def runs(binary: np.ndarray) -> np.ndarray:
    """Run lengths of a 0/1 `(H, W)` mask in column-major order, starting with a run of zeros
    (of length 0 when the first pixel is set): COCO's uncompressed RLE counts."""
    flat = binary.ravel(order="F").astype(np.int8)
    if flat.size == 0:
        return np.zeros(1, dtype=np.int64)
    changes = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate(([0], changes, [flat.size]))
    lengths = np.diff(edges)
    return np.concatenate(([0], lengths)) if flat[0] else lengths


def coco_counts(counts: np.ndarray) -> str:
    """COCO's compressed RLE string (pycocotools' `rleToString`): each count after the second as
    the difference from the count two before, written 5 bits a character, least significant
    first, with a continuation bit, offset by 48 ('0')."""
    characters = []
    values = [int(value) for value in counts]
    for index, value in enumerate(values):
        number = value - values[index - 2] if index > 2 else value
        more = True
        while more:
            chunk = number & 0x1F
            number >>= 5  # arithmetic shift: negative differences end at -1
            more = number != -1 if chunk & 0x10 else number != 0
            characters.append(chr((chunk | (0x20 if more else 0)) + 48))
    return "".join(characters)


def coco_rle(labels: np.ndarray, index: int) -> dict:
    """`{"size": [H, W], "counts": str}` of class `index`: what `pycocotools.mask.decode` reads."""
    return {
        "size": [int(labels.shape[0]), int(labels.shape[1])],
        "counts": coco_counts(runs(labels == index)),
    }


# Label Studio's brush RLE is thi-ng's rle-pack: a bit stream of a 32-bit value count, the word
# size less one (5 bits), four run-length field widths less one (4 bits each), then chunks of
# (repeat flag, 2-bit width index, run length less one, the word). Only repeat chunks are written:
# a class mask is long runs. Values are the RGBA bytes of the mask (0 or 255 in every channel).
BRUSH_WIDTHS = (3, 4, 8, 16)
WORD_BITS = 8


def brush_rle(binary: np.ndarray) -> list[int]:
    """Label Studio's `value.rle` for a 0/1 `(H, W)` mask (what its converter's `mask2rle` of
    `mask * 255` decodes to): row-major RGBA, 4 values a pixel."""
    flat = np.repeat(np.where(binary.ravel(), 255, 0).astype(np.uint8), 4)
    bits = [f"{flat.size:032b}", f"{WORD_BITS - 1:05b}", *(f"{width - 1:04b}" for width in BRUSH_WIDTHS)]
    if flat.size:
        changes = np.flatnonzero(np.diff(flat)) + 1
        starts = np.concatenate(([0], changes))
        lengths = np.diff(np.concatenate((starts, [flat.size])))
        for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
            word = f"{int(flat[start]):08b}"
            while length:
                chunk = min(length, 1 << BRUSH_WIDTHS[-1])
                width_index = next(i for i, width in enumerate(BRUSH_WIDTHS) if chunk <= 1 << width)
                width = BRUSH_WIDTHS[width_index]
                bits.append(f"1{width_index:02b}{chunk - 1:0{width}b}{word}")
                length -= chunk
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return list(int(stream, 2).to_bytes(len(stream) // 8, "big"))
