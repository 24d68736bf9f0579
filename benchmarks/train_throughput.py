"""Training throughput for both recipes, with baselines measured in the same run, and the projected
wall time of each recipe's schedule on the machine it runs on.

1. Model step (images/s): forward + cross-entropy (void ignored) + backward + Adam step at each
   recipe's training input (seed 224², fast 320² crops), fastseg's `SegmentationModel` vs
   segmentation_models_pytorch `Unet("vgg16_bn")`. On CUDA: bf16 autocast and channels_last, as
   `fastseg train` does; `--compile` adds torch.compile to fastseg's model.
2. Data pipeline (images/s of one loader process): fastai's training DataLoader with the
   recipe's augmentation over VOC-sized (500x375-ish) JPEG + palette PNG pairs, decoding
   included. `fastseg train` runs one such loader per spare core.
3. Start-up check: verify every pair and count training pixels, serial as before vs the threaded
   single pass `fastseg train` now makes.
4. Projection: epochs x training images / min(model rate, loader rate x workers), validation left
   out (725 images a epoch, forward only). On CUDA this is the expected wall time of the schedule.

    python benchmarks/train_throughput.py [--device cpu|cuda] [--batch-size 4] [--steps 3]
        [--recipes seed fast] [--size N] [--step-only] [--channels-last] [--json FILE]

`--step-only` measures (1) alone, without importing fastai (gpu_check.sh); `--size` replaces the
recipes' input side (a tiny CPU rehearsal); `--channels-last` adds, on CPU, both models' step in
channels_last memory format, in the same run; `--json` also writes the figures to FILE.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fastseg.atomic import write_json
from fastseg.data.check import check_dataset
from fastseg.data.demo_voc import make_demo_voc
from fastseg.data.split import Split
from fastseg.data.voc import VOC, find_voc
from fastseg.launch.device import default_num_workers
from fastseg.model.config import ModelConfig
from fastseg.model.macs import count_macs
from fastseg.model.network import SegmentationModel
from fastseg.training.recipes import recipe

TRAINING_IMAGES = {"train": 1_464, "trainaug": 10_582}


def smp_unet() -> torch.nn.Module:
    import segmentation_models_pytorch as smp

    return smp.Unet("vgg16_bn", encoder_weights=None, classes=21)


def step_rate(
    model: torch.nn.Module,
    size: int,
    batch: int,
    steps: int,
    device: torch.device,
    channels_last: bool = False,
) -> float:
    """Training images/s of `model` on random `size`² inputs (a warm-up step first). On CUDA
    always bf16 autocast and channels_last, as `fastseg train`; on CPU fp32, contiguous unless
    `channels_last`."""
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, size, size, device=device)
    target = torch.randint(0, 21, (batch, size, size), device=device)
    target[:, :4] = 255
    cuda = device.type == "cuda"
    if cuda or channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(images).float(), target, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2 if cuda else 1):  # warm-up: allocator, cuDNN autotuning, compilation
        step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def pipeline_rate(voc_root: Path, config, batch: int, batches: int) -> float:  # noqa: ANN001
    """Images/s of one loader process: decode + the recipe's item transforms + collation, on one
    thread as in a DataLoader worker (torch gives each worker one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _pipeline_rate(voc_root, config, batch, batches)
    finally:
        torch.set_num_threads(threads)


def _pipeline_rate(voc_root: Path, config, batch: int, batches: int) -> float:  # noqa: ANN001
    from fastseg.training.data import build_dataloaders  # fastai: only for the loader figure

    folder = find_voc(voc_root)
    ids = folder.ids("train")
    dls = build_dataloaders(folder, ids, ids[:batch], size=config.size, batch_size=batch,
                            augment=config.augment, num_workers=0, device="cpu", seed=0,
                            crop_size=config.train_size)  # fmt: skip
    iterator = iter(dls.train)
    next(iterator)  # warm-up
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - start)


def startup_seconds(voc_root: Path) -> dict[str, float]:
    """The start-up check (every pair opened, training pixels counted) on one thread vs the
    threaded pass `fastseg train` makes."""
    folder = find_voc(voc_root)
    ids = folder.ids("train")
    split = Split(train=ids, valid=[], test=[])
    start = time.perf_counter()
    check_dataset(folder, split, threads=1)
    serial = time.perf_counter() - start
    start = time.perf_counter()
    check_dataset(folder, split)
    threaded = time.perf_counter() - start
    return {"serial_s": serial, "threaded_s": threaded, "speedup": serial / threaded, "pairs": len(ids)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=4, help="model steps (32 on a GPU)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--images", type=int, default=96, help="generated VOC-sized training pairs")
    parser.add_argument("--compile", action="store_true", help="torch.compile fastseg's model")
    parser.add_argument("--recipes", nargs="+", choices=["seed", "fast"], default=["seed", "fast"])
    parser.add_argument("--size", type=int, default=None, help="input side instead of the recipes'")
    parser.add_argument("--step-only", action="store_true", help="the model step alone (no fastai)")
    parser.add_argument("--channels-last", action="store_true", help="also both steps in channels_last (CPU)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    workers = default_num_workers()
    report: dict = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
        "loader_workers": workers,
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "recipes": {},
    }
    with tempfile.TemporaryDirectory() as temporary:
        voc_root = Path(temporary)
        if not args.step_only:
            make_demo_voc(voc_root, n_train=args.images, n_val=2, seed=0, min_size=375, max_size=500)
            report["startup_check"] = {
                key: round(value, 3) for key, value in startup_seconds(voc_root).items()
            }
        for name in args.recipes:
            config = recipe(name)
            size = args.size or config.train_size
            model = SegmentationModel(ModelConfig(num_classes=len(VOC)))
            macs = sum(count_macs(model, torch.zeros(1, 3, size, size)).values())
            if args.compile:
                model = torch.compile(model)
            fastseg = step_rate(model, size, args.batch_size, args.steps, device)
            smp = step_rate(smp_unet(), size, args.batch_size, args.steps, device)
            figures = report["recipes"][name] = {
                "train_set": config.train_set,
                "input": f"{size}x{size}",
                "epochs": config.epochs,
                "training_gflop_per_image": round(3 * 2 * macs / 1e9, 1),  # backward ~ 2x forward
                "precision": "bf16 autocast, channels_last" if device.type == "cuda" else "fp32",
                "model_images_per_s": round(fastseg, 2),
                "smp_unet_images_per_s": round(smp, 2),
                "ratio_fastseg_over_smp": round(fastseg / smp, 2),
            }
            if args.channels_last and device.type == "cpu":
                fastseg_last = step_rate(
                    SegmentationModel(ModelConfig(num_classes=len(VOC))),
                    size,
                    args.batch_size,
                    args.steps,
                    device,
                    True,
                )
                smp_last = step_rate(smp_unet(), size, args.batch_size, args.steps, device, True)
                figures.update(
                    model_channels_last_images_per_s=round(fastseg_last, 2),
                    smp_unet_channels_last_images_per_s=round(smp_last, 2),
                    ratio_channels_last_over_contiguous=round(fastseg_last / fastseg, 2),
                    ratio_best_fastseg_over_best_smp=round(
                        max(fastseg, fastseg_last) / max(smp, smp_last), 2
                    ),
                )
            if args.step_only:
                continue
            loader = pipeline_rate(voc_root, config, batch=8, batches=max(1, args.images // 8 - 2))
            rate = min(fastseg, loader * max(1, workers))
            samples = config.epochs * TRAINING_IMAGES[config.train_set]
            figures.update(
                loader_images_per_s_per_process=round(loader, 1),
                bound_by="model" if fastseg <= loader * max(1, workers) else "loaders",
                projected_schedule_hours=round(samples / rate / 3600, 2),
            )
    print(json.dumps(report, indent=1))
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
