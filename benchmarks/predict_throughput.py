"""End-to-end `fastseg predict` throughput against two baselines, measured in the same run.

- fastseg: the whole `fastseg predict` process on N 500x375 JPEGs (decode -> model at 224² ->
  logits upsampled to 500x375 -> argmax -> palette PNG written), wall time and peak RSS;
- (a) segmentation_models_pytorch `Unet("vgg16_bn")`: plain fp32 forward on ready 224² tensors
  (no decoding, no resizing, no writing: a lower bound on its cost);
- (b) fastai `unet_learner(vgg16_bn)` + `get_preds` over the same files at 224².
Also: peak RSS of fastseg predict for 50 and for 500 images, and the share of this CPU's
measured bf16 matmul peak that fastseg's model reaches.

    python benchmarks/predict_throughput.py [--images 50] [--large 500]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from shared import FASTSEG, predict_arguments, seconds_and_peak_rss, untrained_model  # beside this script


def make_jpegs(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        pixels = rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)
        pixels[100:250, 150:350] = rng.integers(0, 255, 3, dtype=np.uint8)
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def fastseg_process(model: Path, images: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one whole `fastseg predict` process."""
    return seconds_and_peak_rss([*FASTSEG, *predict_arguments(model, images, out, "--batch-size", "8")])


def smp_forward(count: int, batch: int = 8) -> float:
    import segmentation_models_pytorch as smp

    model = smp.Unet("vgg16_bn", encoder_weights=None, classes=21).eval()
    images = torch.randn(batch, 3, 224, 224)
    with torch.inference_mode():
        model(images)
        start = time.perf_counter()
        for _ in range(max(1, count // batch)):
            model(images)
    return max(1, count // batch) * batch / (time.perf_counter() - start)


def fastai_get_preds(paths: list[Path]) -> float:
    from fastai.vision.all import SegmentationDataLoaders, unet_learner
    from fastai.vision.augment import Resize
    from torchvision.models import vgg16_bn

    masks = lambda path: np.zeros((375, 500), np.uint8)  # noqa: E731 - labels are irrelevant here
    dls = SegmentationDataLoaders.from_label_func(paths[0].parent, paths[:20], masks, codes=list(range(21)),
                                                  bs=4, item_tfms=Resize(224, method="squish"),
                                                  num_workers=0)  # fmt: skip
    learn = unet_learner(dls, vgg16_bn, pretrained=False, n_out=21)
    test = dls.test_dl(paths, bs=8, num_workers=0)
    start = time.perf_counter()
    learn.get_preds(dl=test)
    return len(paths) / (time.perf_counter() - start)


def bf16_matmul_peak(sizes: tuple[int, ...] = (2048, 4096), trials: int = 3, repeats: int = 8) -> float:
    """Best bf16 `torch.matmul` FLOP/s over a few sizes and trials (a noisy 2-core VM needs the max)."""
    best = 0.0
    for size in sizes:
        a = torch.randn(size, size, dtype=torch.bfloat16)
        b = torch.randn(size, size, dtype=torch.bfloat16)
        a @ b
        for _ in range(trials):
            start = time.perf_counter()
            for _ in range(repeats):
                a @ b
            best = max(best, repeats * 2 * size**3 / (time.perf_counter() - start))
    return best


def model_flops_rate(batch: int = 8, repeats: int = 4) -> tuple[float, float]:
    """fastseg model-only images/s in bf16 autocast at 224², and its FLOP/s (2 x MACs)."""
    from fastseg.data.voc import VOC
    from fastseg.model.config import ModelConfig
    from fastseg.model.macs import count_macs
    from fastseg.model.network import SegmentationModel

    model = SegmentationModel(ModelConfig(num_classes=len(VOC))).eval()
    macs = sum(count_macs(model, torch.zeros(1, 3, 224, 224)).values())
    model = model.to(memory_format=torch.channels_last)
    images = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(images)
        start = time.perf_counter()
        for _ in range(repeats):
            model(images)
    per_second = repeats * batch / (time.perf_counter() - start)
    return per_second, per_second * 2 * macs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model.pth (default: an untrained one)")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--large", type=int, default=500, help="image count for the memory check")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model = args.model
        if model is None:
            model = untrained_model(scratch / "model.pth", 224)
        small = make_jpegs(scratch / "small", args.images)
        make_jpegs(scratch / "large", args.large)
        seconds, rss_small = fastseg_process(model, scratch / "small", scratch / "out_small")
        large_seconds, rss_large = fastseg_process(model, scratch / "large", scratch / "out_large")
        fastseg_rate = args.images / seconds
        smp_rate = smp_forward(args.images)
        fastai_rate = fastai_get_preds(small[:20])  # slow: 20 images are enough for a rate
        model_rate, flops = model_flops_rate()
        peak = bf16_matmul_peak()
    report = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "images": args.images,
        "fastseg_end_to_end_images_per_s": round(fastseg_rate, 2),
        f"fastseg_end_to_end_images_per_s_{args.large}_images": round(args.large / large_seconds, 2),
        "smp_unet_fp32_forward_images_per_s": round(smp_rate, 2),
        "fastai_get_preds_images_per_s": round(fastai_rate, 2),
        "ratio_vs_smp_forward": round(fastseg_rate / smp_rate, 2),
        f"ratio_vs_smp_forward_{args.large}_images": round(args.large / large_seconds / smp_rate, 2),
        "ratio_vs_fastai_get_preds": round(fastseg_rate / fastai_rate, 2),
        f"peak_rss_mib_{args.images}_images": round(rss_small),
        f"peak_rss_mib_{args.large}_images": round(rss_large),
        "peak_rss_growth": round(rss_large / rss_small - 1, 3),
        "fastseg_model_only_bf16_images_per_s": round(model_rate, 2),
        "bf16_matmul_peak_tflops": round(peak / 1e12, 3),
        "share_of_bf16_peak": round(flops / peak, 3),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
