"""Training throughput (images/s) of fastseg's model vs segmentation_models_pytorch's
`Unet("vgg16_bn")`, measured in the same run at the same size and batch.

A training step = forward + weighted cross-entropy (void ignored) + backward + Adam step.
On CUDA both run with bf16 autocast and channels_last, as `fastseg train` does.

    python benchmarks/train_throughput.py [--size 224] [--batch-size 8] [--steps 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

from fastseg.model import SegmentationModel


def smp_unet() -> torch.nn.Module:
    import segmentation_models_pytorch as smp

    return smp.Unet("vgg16_bn", encoder_weights=None, classes=21)


def images_per_second(
    model: torch.nn.Module, size: int, batch: int, steps: int, device: torch.device
) -> float:
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, size, size, device=device)
    target = torch.randint(0, 21, (batch, size, size), device=device)
    target[:, :4] = 255
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(images).float(), target, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocator, cuDNN autotuning
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    results = {
        "fastseg": images_per_second(SegmentationModel(), args.size, args.batch_size, args.steps, device),
        "smp_unet_vgg16_bn": images_per_second(smp_unet(), args.size, args.batch_size, args.steps, device),
    }
    machine = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    report = {
        "device": machine,
        "torch": torch.__version__,
        "size": args.size,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "images_per_second": {name: round(value, 2) for name, value in results.items()},
        "ratio_fastseg_over_smp": round(results["fastseg"] / results["smp_unet_vgg16_bn"], 2),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
