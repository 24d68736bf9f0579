"""Where a CPU training step's time goes, fastseg against smp's Unet, and what the full-resolution
decoder block costs against what it buys (issue 12, item 6).

fastseg's decoder differs from smp `Unet("vgg16_bn")`'s in three places: a light centre (one
512 -> 256 conv at 1/32, smp: two 512 -> 512), bilinear upsampling (smp: nearest), and its last
block, at full resolution, concatenates the encoder's 64-channel 1/1 map (96 -> 16 channels; smp
drops that skip: 32 -> 16). In one run:

1. `steps`: training images/s (forward + cross-entropy + backward + Adam, fp32, batch 4) of
   fastseg, of fastseg without the full-resolution skip (`NoFullResolutionSkip`), and of smp,
   contiguous and channels_last, at each recipe's input (seed 224², fast 320²);
2. `blocks`: forward + backward milliseconds of each block on its real inputs, both models;
3. `ops`: torch.profiler's operators by self CPU time over two fastseg and two smp steps;
4. `--ablation`: `fastseg train` of the demo recipe (generated data, fast recipe shrunk for
   CPU) with and without the full-resolution skip, scored on the test half at original size:
   mIoU and boundary mIoU (pixels within `--band` px of a class edge in the ground truth), both
   from `ConfusionMatrix`.

    python benchmarks/decoder_cost.py [--sizes 224 320] [--batch-size 4] [--ablation [--seeds 0 1]]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fastseg.data.voc import VOC
from fastseg.model.config import ModelConfig
from fastseg.model.network import SegmentationModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import smp_unet  # noqa: E402


class NoFullResolutionSkip(SegmentationModel):
    """fastseg's model whose last decoder block takes no 1/1 skip (32 -> 16 channels, as smp's):
    the 64-channel full-resolution map is replaced by an empty one of the same size, so the
    block still upsamples to it and nothing else changes."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config or ModelConfig(num_classes=len(VOC)))
        from fastseg.model.decoder import DecoderBlock

        last = self.decoder.blocks[-1]
        self.decoder.blocks[-1] = DecoderBlock(last.fuse[0].in_channels - 64, 0, last.refine[0].out_channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.encoder(images)
        features[0] = features[0][:, :0]
        return self.head(self.decoder(features))


def fastseg_blocks(model: SegmentationModel, images: torch.Tensor) -> list[tuple[str, nn.Module, tuple]]:
    """(name, module, inputs) of each block, inputs as the real forward gives them."""
    blocks, x = [], images
    scales = ["1/1", "1/2", "1/4", "1/8", "1/16"]
    for scale, stage in zip(scales, model.encoder.stages, strict=True):
        blocks.append((f"encoder stage {scale}", stage, (x,)))
        x = stage(x)
    features = model.encoder(images)
    blocks.append(("centre 1/32", model.decoder.center, (features[-1],)))
    x = model.decoder.center(features[-1])
    for scale, block, skip in zip(scales[::-1], model.decoder.blocks, features[-2::-1], strict=True):
        blocks.append((f"decoder block {scale}", block, (x, skip)))
        x = block(x, skip)
    blocks.append(("head 1x1", model.head, (x,)))
    return blocks


def smp_blocks(model: nn.Module, images: torch.Tensor) -> list[tuple[str, nn.Module, tuple]]:
    features = model.encoder(images)
    decoder = model.decoder
    shapes = [feature.shape[2:] for feature in features][::-1]
    skips = features[1:][::-1]
    blocks = [("centre 1/32", decoder.center, (skips[0],))]
    x = decoder.center(skips[0])
    for index, (scale, block) in enumerate(
        zip(["1/16", "1/8", "1/4", "1/2", "1/1"], decoder.blocks, strict=True)
    ):
        height, width = shapes[index + 1]
        skip = skips[index + 1] if index + 1 < len(skips) else None
        blocks.append((f"decoder block {scale}", block, (x, int(height), int(width), skip)))
        x = block(x, int(height), int(width), skip_connection=skip)
    blocks.append(("head", model.segmentation_head, (x,)))
    return blocks


def block_milliseconds(module: nn.Module, inputs: tuple, repeats: int = 3) -> float:
    """Median forward + backward time of `module` on copies of `inputs` that require grad."""
    times = []
    for _ in range(repeats + 1):
        given = [
            value.detach().requires_grad_() if isinstance(value, torch.Tensor) else value for value in inputs
        ]
        started = time.perf_counter()
        output = module(*given)
        output.backward(torch.ones_like(output))
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times[1:])


def block_table(size: int, batch: int) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    images = torch.randn(batch, 3, size, size)
    table = {}
    fastseg = SegmentationModel(ModelConfig(num_classes=len(VOC))).train()
    for name, model, blocks in (("fastseg", fastseg, fastseg_blocks),
                                ("smp", smp_unet().train(), smp_blocks)):  # fmt: skip
        with torch.no_grad():
            listed = blocks(model, images)
        table[name] = {
            label: round(block_milliseconds(module, inputs), 1) for label, module, inputs in listed
        }
    return table


def op_table(size: int, batch: int, top: int = 12) -> dict[str, list[dict]]:
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    images = torch.randn(batch, 3, size, size)
    target = torch.randint(0, 21, (batch, size, size))
    tables = {}
    for name, model in (
        ("fastseg", SegmentationModel(ModelConfig(num_classes=len(VOC))).train()),
        ("smp", smp_unet().train()),
    ):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step() -> None:
            loss = F.cross_entropy(model(images), target, ignore_index=255)  # noqa: B023
            optimizer.zero_grad(set_to_none=True)  # noqa: B023
            loss.backward()
            optimizer.step()  # noqa: B023

        step()
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            step()
            step()
        events = sorted(profiler.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)
        total = sum(event.self_cpu_time_total for event in events)
        tables[name] = [
            {
                "op": event.key,
                "ms_per_step": round(event.self_cpu_time_total / 2000, 1),
                "share": round(event.self_cpu_time_total / total, 3),
                "calls_per_step": event.count // 2,
            }
            for event in events[:top]
        ]
    return tables


def stepper(model: nn.Module, size: int, batch: int, channels_last: bool):  # noqa: ANN201 - a closure
    """One fp32 training step of `model` on fixed random inputs, as `train_throughput.step_rate`."""
    torch.manual_seed(0)
    images = torch.randn(batch, 3, size, size)
    target = torch.randint(0, 21, (batch, size, size))
    target[:, :4] = 255
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        loss = F.cross_entropy(model(images), target, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: oneDNN primitives, allocator
    return step


def step_table(size: int, batch: int, steps: int, rounds: int = 3) -> dict[str, float]:
    """Images/s of each model and layout, measured in `rounds` interleaved rounds (A B C ... A B
    C) and reported as medians, so the load of a shared machine drifting during the run falls on
    every model alike."""
    makers = {
        "fastseg": lambda: SegmentationModel(ModelConfig(num_classes=len(VOC))),
        "fastseg_no_full_resolution_skip": NoFullResolutionSkip,
        "smp": smp_unet,
    }
    steppers = {f"{name} {layout}": stepper(make(), size, batch, layout == "channels_last")
                for name, make in makers.items() for layout in ("contiguous", "channels_last")}  # fmt: skip
    samples: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(rounds):
        for name, step in steppers.items():
            started = time.perf_counter()
            for _ in range(steps):
                step()
            samples[name].append(steps * batch / (time.perf_counter() - started))
    rates = {name: round(statistics.median(values), 3) for name, values in samples.items()}
    rates["ratio fastseg / smp (contiguous)"] = round(
        rates["fastseg contiguous"] / rates["smp contiguous"], 3
    )
    rates["ratio fastseg / smp (channels_last)"] = round(
        rates["fastseg channels_last"] / rates["smp channels_last"], 3
    )
    rates["ratio best fastseg / best smp"] = round(
        max(rates["fastseg contiguous"], rates["fastseg channels_last"])
        / max(rates["smp contiguous"], rates["smp channels_last"]),
        3,
    )
    rates["ratio fastseg channels_last / contiguous"] = round(
        rates["fastseg channels_last"] / rates["fastseg contiguous"], 3
    )
    rates["ratio without / with full-resolution skip"] = round(
        rates["fastseg_no_full_resolution_skip contiguous"] / rates["fastseg contiguous"], 3
    )
    return rates


def boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within `width` px (chessboard distance) of a change of label in `mask`, void left out."""
    from scipy.ndimage import binary_dilation

    edge = np.zeros(mask.shape, dtype=bool)
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edge[1:, :] |= mask[1:, :] != mask[:-1, :]
    return binary_dilation(edge, iterations=width) & (mask != 255)


def ablation(seeds: list[int], band: int, epochs: int) -> dict:
    """Demo-recipe training (`fastseg.demo.demo_config`) with and without the full-resolution skip,
    each scored on the test half: whole-image and boundary-band mIoU, pixel accuracy."""
    import fastseg.training.learner as learner_module
    from fastseg.data.demo_voc import make_demo_voc
    from fastseg.data.voc import find_voc
    from fastseg.demo import demo_config
    from fastseg.imaging.masks import read_mask
    from fastseg.inference.segmenter import Segmenter, segment
    from fastseg.metrics import ConfusionMatrix
    from fastseg.model.checkpoint import LoadedModel
    from fastseg.runs.folder import RunFolder
    from fastseg.training.trainer import train

    results: dict = {}
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        make_demo_voc(root / "data")
        folder = find_voc(root / "data")
        for variant, network in (("with full-resolution skip", SegmentationModel),
                                 ("without", NoFullResolutionSkip)):  # fmt: skip
            for seed in seeds:
                run = root / f"{network.__name__}-{seed}"
                learner_module.SegmentationModel = network
                try:
                    config = demo_config(root / "data", run, epochs)
                    config = replace(config, seed=seed)
                    started = time.perf_counter()
                    train(config, run, show_progress=False)
                    seconds = time.perf_counter() - started
                finally:
                    learner_module.SegmentationModel = SegmentationModel
                state = torch.load(run / "model.pth", weights_only=True)
                model = network(ModelConfig.from_dict(state["model_config"]))
                model.load_state_dict(state["state_dict"])
                loaded = LoadedModel(model.eval(), state["size"], state["resize"], state["classes"],
                                     tuple(state["mean"]), tuple(state["std"]), {})  # fmt: skip
                segmenter = Segmenter.with_torch(loaded, torch.device("cpu"), precision="fp32")
                ids = RunFolder(run).read_split().ids("test")
                whole, edges = ConfusionMatrix(len(loaded.classes)), ConfusionMatrix(len(loaded.classes))
                dataset = segmenter.dataset([folder.image_path(image_id) for image_id in ids])
                for result in segment(segmenter, dataset, batch_size=8, num_workers=0):
                    truth = read_mask(folder.mask_path(ids[result.index]))
                    labels = result.labels()
                    whole.update(torch.from_numpy(labels), torch.from_numpy(truth))
                    near = boundary_band(truth, band)
                    edges.update(torch.from_numpy(labels[near]), torch.from_numpy(truth[near]))
                results.setdefault(variant, []).append({
                    "seed": seed, "train_seconds": round(seconds, 1), "test_images": len(ids),
                    "miou": round(whole.scores().mean_iou, 4),
                    "pixel_accuracy": round(whole.scores().pixel_accuracy, 4),
                    f"boundary_miou_{band}px": round(edges.scores().mean_iou, 4),
                    f"boundary_pixel_accuracy_{band}px": round(edges.scores().pixel_accuracy, 4),
                })  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 320])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2, help="steps per model per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--skip-profile", action="store_true", help="only the ablation")
    parser.add_argument("--skip-steps", action="store_true", help="blocks and ops only")
    parser.add_argument("--ablation", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--band", type=int, default=2, help="boundary band half-width in pixels")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    flags = (
        Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0]
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    report: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__}",
        "avx512": "avx512f" in flags, "avx2": "avx2" in flags,
        "bf16": "avx512_bf16" in flags or "amx_bf16" in flags,
        "batch_size": args.batch_size,
    }  # fmt: skip
    if not args.skip_profile:
        for size in args.sizes:
            figures = report[f"{size}"] = {}
            if not args.skip_steps:
                figures["steps_images_per_s"] = step_table(size, args.batch_size, args.steps, args.rounds)
                print(json.dumps({size: figures["steps_images_per_s"]}, indent=1), flush=True)
            figures["blocks_forward_backward_ms"] = block_table(size, args.batch_size)
            print(json.dumps({size: figures["blocks_forward_backward_ms"]}, indent=1), flush=True)
            figures["ops"] = op_table(size, args.batch_size)
            print(json.dumps({size: figures["ops"]}, indent=1), flush=True)
    if args.ablation:
        report["ablation"] = ablation(args.seeds, args.band, args.epochs)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
