"""Where one `fastseg predict` image's time goes, stage by stage, in one process (issue #24).

VOC-sized (500x375) JPEGs at `--size` (224 by default), an untrained model of the default shape:
decoding, fitting and normalising (`ImageFiles`), the model a batch at a time (torch at
`--precision auto`, BatchNorm folded, channels_last), the upsampling of the class scores to the
image's size, the argmax, the palette PNG, the class fractions. Each stage is timed alone on
one thread's worth of work, so the sum is what predict pays serially; `fastseg predict` overlaps
the stages after the forward pass (2 output threads) and decoding (a prefetch thread) with it.

    python benchmarks/predict_stages.py [--images 24] [--size 224] [--precision auto]
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from peer_ratios import cpu_description, default_typed_options, make_jpegs  # noqa: E402 - a script beside this one
from shared import untrained_model  # noqa: E402 - a script beside this one


def main() -> None:
    args = default_typed_options(__doc__, images=24, size=224, batch=8, precision="auto")
    from fastseg.imaging.masks import encode_mask
    from fastseg.inference.image_outputs import class_fractions
    from fastseg.inference.segmenter import Segmenter

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        images = sorted(make_jpegs(scratch / "images", args.images).glob("*.jpg"))
        torch.manual_seed(0)
        model = untrained_model(scratch / "model.pth", args.size)
        segmenter = Segmenter.open(model, torch.device("cpu"), args.precision)
        dataset = segmenter.dataset(images)
        seconds: dict[str, float] = dict.fromkeys(
            ("decode+fit+normalise", "forward", "upsample", "argmax", "png", "fractions"), 0.0
        )
        dataset[0]  # warm-up
        segmenter.logits(np.stack([dataset[0]["image"]] * args.batch))
        for start in range(0, len(images), args.batch):
            began = time.perf_counter()
            items = [dataset[index] for index in range(start, min(start + args.batch, len(images)))]
            seconds["decode+fit+normalise"] += time.perf_counter() - began
            began = time.perf_counter()
            logits = segmenter.logits(np.stack([item["image"] for item in items]))
            seconds["forward"] += time.perf_counter() - began
            for item, logit in zip(items, logits, strict=True):
                began = time.perf_counter()
                (rows, scores), *_ = list(segmenter.bands(logit, item["height"], item["width"]))
                seconds["upsample"] += time.perf_counter() - began
                began = time.perf_counter()
                labels = scores.max(0).indices.to(torch.uint8).numpy()
                seconds["argmax"] += time.perf_counter() - began
                began = time.perf_counter()
                encode_mask(io.BytesIO(), labels, segmenter.loaded.class_set.palette())
                seconds["png"] += time.perf_counter() - began
                began = time.perf_counter()
                class_fractions(labels, len(segmenter.loaded.classes))
                seconds["fractions"] += time.perf_counter() - began
        per_image = {stage: round(1000 * value / len(images), 2) for stage, value in seconds.items()}
        total = sum(per_image.values())
        report = {
            "cpu": cpu_description(),
            "torch": torch.__version__,
            "precision": args.precision,
            "autocast": str(getattr(segmenter.runtime, "dtype", None)),
            "size": args.size,
            "images": len(images),
            "ms_per_image": per_image,
            "share": {stage: round(value / total, 3) for stage, value in per_image.items()},
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
