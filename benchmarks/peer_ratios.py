"""fastseg's runtimes against segmentation_models_pytorch's Unet on this CPU, all in one run.

1. Forward only, ready tensors, at 224², 320² and 512² (batch 4): smp `Unet("vgg16_bn",
   encoder_weights=None)` in fp32, fp32 + channels_last and bf16 autocast + channels_last (at the
   first size only where bf16 is emulated: several times slower, never the best), against
   fastseg's network on each runtime: torch (what `fastseg predict --model model.pth` runs: fp32
   or native bf16 by `--precision auto`, channels_last, BatchNorm folded), onnxruntime fp32 and
   INT8 (`fastseg export [--int8]`), and OpenVINO reading the same two ONNX files (if installed).
   Each is measured in alternating rounds; the best round counts (the machine is shared).
2. `fastseg predict` as a whole process (start-up, decoding 500x375 JPEGs, the model at 224²,
   upsampling, argmax, palette PNGs, CSV) on 50 images: model.pth with the default precision
   (`auto`: bf16 on a CPU with native bf16) and with `--precision fp32`, model.onnx,
   model.int8.onnx, and the run folder with the default `--runtime auto` (what a user gets), against
   the best smp setting at 224²; one image alone gives the start-up; each row records the runtime
   its predictions.csv names (what `auto` chose). `--process-rounds` rounds (3), the rows in
   alternating order; each row's median counts.
3. Peak RSS of predict on 500 images against 50 (torch and INT8).

Untrained weights (speed does not depend on them; INT8 is calibrated on the generated JPEGs). With
no trained run, the INT8 file's accuracy check is stamped by this script (validation_images 0:
there are no labels here) so that `auto` may take it: the auto row measures speed, not accuracy.

    python benchmarks/peer_ratios.py [--sizes 224 320 512] [--images 50] [--large 500]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from shared import FASTSEG, predict_arguments, seconds_and_peak_rss, untrained_model  # beside this script

from fastseg.inference.precision import cpu_supports_bf16

FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16")


def default_typed_options(doc: str, **defaults: object) -> argparse.Namespace:
    """The command line of a script whose options are all `--name VALUE` with a default, each of
    its default's type (`batch=4`: `--batch`, an int; `batch_size`: `--batch-size`), described by
    its docstring's first line (compile_forward, predict_stages)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, default in defaults.items():
        if isinstance(default, bool):  # bool("False") is True: a flag needs action="store_true"
            raise TypeError(f"--{name}: a flag, not a typed option")
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    return parser.parse_args()


def cpu_description() -> dict[str, object]:
    text = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?"
    )
    flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
    return {
        "model": model,
        "threads": torch.get_num_threads(),
        "flags": {flag: flag in flags for flag in FLAGS},
        "machine": platform.machine(),
    }


def make_jpegs(folder: Path, count: int) -> Path:
    """`count` VOC-sized (500x375) JPEGs of noise with a flat block (as predict_throughput.py)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)
        pixels[100:250, 150:350] = rng.integers(0, 255, 3, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:05d}.jpg", quality=90)
    return folder


Forward = Callable[[torch.Tensor], object]


def smp_forwards() -> dict[str, Forward]:
    import segmentation_models_pytorch as smp

    plain = smp.Unet("vgg16_bn", encoder_weights=None, classes=21).eval()
    last = smp.Unet("vgg16_bn", encoder_weights=None, classes=21).eval().to(memory_format=torch.channels_last)

    def fp32(images: torch.Tensor) -> object:
        with torch.inference_mode():
            return plain(images)

    def fp32_cl(images: torch.Tensor) -> object:
        with torch.inference_mode():
            return last(images.contiguous(memory_format=torch.channels_last))

    def bf16_cl(images: torch.Tensor) -> object:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return last(images.contiguous(memory_format=torch.channels_last))

    return {"smp fp32": fp32, "smp fp32+channels_last": fp32_cl, "smp bf16+channels_last": bf16_cl}


def fastseg_forwards(model: Path, onnx: Path, int8: Path) -> dict[str, Forward]:
    from fastseg.inference.runtime import open_model, open_onnx

    cpu = torch.device("cpu")
    forwards: dict[str, Forward] = {"fastseg torch": open_model(model, cpu).runtime.logits}
    forwards["fastseg onnxruntime fp32"] = open_onnx(onnx)[1].logits
    forwards["fastseg onnxruntime int8"] = open_onnx(int8)[1].logits
    try:
        import openvino
    except ImportError:
        return forwards
    core = openvino.Core()
    for name, path in (("fp32", onnx), ("int8", int8)):
        compiled = core.compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        forwards[f"fastseg openvino {name}"] = lambda images, compiled=compiled: compiled(images.numpy())[0]
    return forwards


def best_rates(forwards: dict[str, Forward], size: int, batch: int, rounds: int, seconds: float) -> dict:
    """Images/s of each forward at `size`², the best of `rounds` alternating rounds of at least
    `seconds` each (one batch at least: emulated bf16 is slow)."""
    images = torch.randn(batch, 3, size, size)
    rates = {name: 0.0 for name in forwards}
    for forward in forwards.values():
        forward(images)  # warm-up: allocations, oneDNN / onnxruntime kernel choice
    for _ in range(rounds):
        for name, forward in forwards.items():
            done, started = 0, time.perf_counter()
            while True:
                forward(images)
                done += batch
                elapsed = time.perf_counter() - started
                if elapsed >= seconds:
                    break
            rates[name] = max(rates[name], done / elapsed)
    return {name: round(rate, 3) for name, rate in rates.items()}  # 3: a loaded machine gives 0.05 img/s


def predict_process(model: Path, images: Path, out: Path, size: int, *options: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one whole `fastseg predict` process."""
    arguments = predict_arguments(model, images, out, "--batch-size", "8", "--size", str(size), *options)
    return seconds_and_peak_rss([*FASTSEG, *arguments])


def exported_models(scratch: Path, calibration: Path, size: int) -> tuple[Path, Path, Path]:
    from fastseg.export.int8 import quantize
    from fastseg.export.onnx_file import export_graph, save_onnx, with_description
    from fastseg.inference.files import ImageFiles
    from fastseg.model.checkpoint import load_model
    from fastseg.model.exported import SOURCE_DIGEST, file_sha256

    torch.manual_seed(0)
    model = untrained_model(scratch / "model.pth", size)
    loaded = load_model(model)
    source = {SOURCE_DIGEST: file_sha256(model)}  # as `fastseg export` records it: auto reads no torch
    onnx = save_onnx(with_description(export_graph(loaded), loaded, precision="fp32", **source),
                     scratch / "model.onnx")  # fmt: skip
    quantized = scratch / "quantized.onnx"
    images = ImageFiles(sorted(calibration.glob("*.jpg"))[:16], size, loaded.resize, loaded.mean, loaded.std)
    quantize(onnx, quantized, images)
    import onnx as onnx_package

    stamped = {"validation_miou_fp32": 1.0, "validation_miou_int8": 1.0, "validation_images": 0,
               "calibration_images": 16, "forced": False,
               "stamped_by": "peer_ratios.py (speed only)"}  # fmt: skip
    int8 = save_onnx(
        with_description(onnx_package.load(str(quantized)), loaded, precision="int8", int8=stamped, **source),
        scratch / "model.int8.onnx",
    )
    return model, onnx, int8


def recorded_runtime(out: Path) -> str:
    """The runtime column of a predictions.csv (what ran the model; `auto`'s choice)."""
    import csv

    with (out / "predictions.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    return ", ".join(sorted({row.get("runtime") or "?" for row in rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 320, 512])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0, help="at least this long per round")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--large", type=int, default=500, help="image count for the memory check")
    parser.add_argument("--process-rounds", type=int, default=3, help="whole processes per row, in "
                        "alternating order; the median counts (the largest peak RSS)")  # fmt: skip
    parser.add_argument("--large-runtimes", nargs="+", default=["torch", "onnxruntime int8"],
                        help="runtimes whose peak RSS is measured on --large images too")  # fmt: skip
    parser.add_argument("--models", type=Path, default=None, help="a folder with model.pth, model.onnx and "
                        "model.int8.onnx (fastseg export) instead of an untrained model")  # fmt: skip
    parser.add_argument("--whole-process-only", action="store_true", help="skip the forward table (smp "
                        "is still measured at the first size, for the ratios)")  # fmt: skip
    args = parser.parse_args()
    report: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu_description(),
        "native_bf16": cpu_supports_bf16(),
        "torch": torch.__version__,
    }
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        small = make_jpegs(scratch / "small", args.images)
        large = make_jpegs(scratch / "large", args.large)
        if args.models:  # model.pth, model.onnx and model.int8.onnx of a run that was exported
            model, onnx, int8 = (
                args.models / name for name in ("model.pth", "model.onnx", "model.int8.onnx")
            )
        else:
            model, onnx, int8 = exported_models(scratch, small, args.sizes[0])
        forwards = {**smp_forwards(), **fastseg_forwards(model, onnx, int8)}
        if args.whole_process_only:  # smp alone, for the whole process's ratio
            forwards = smp_forwards()
            args.sizes = args.sizes[:1]
        forward = {}
        for size in args.sizes:
            measured = dict(forwards)
            if size != args.sizes[0] and not report["native_bf16"]:
                # emulated bf16 is several times slower than fp32 (measured at the first size):
                # minutes a batch at 512², and never the best setting where it is emulated
                measured.pop("smp bf16+channels_last")
            forward[size] = best_rates(measured, size, args.batch, args.rounds, args.seconds)
            print(size, forward[size], flush=True)
        report["forward_images_per_s"] = forward
        ratios = {}
        for size, rates in forward.items():
            if "fastseg torch" not in rates:
                continue
            smp_best = max((rate, name) for name, rate in rates.items() if name.startswith("smp"))
            ours = max((rate, name) for name, rate in rates.items() if name.startswith("fastseg"))
            ratios[size] = {
                "best smp": smp_best[1],
                "best fastseg": ours[1],
                "ratio": round(ours[0] / smp_best[0], 2),
                "fastseg torch / best smp": round(rates["fastseg torch"] / smp_best[0], 2),
            }
        report["forward_ratios"] = ratios
        size = args.sizes[0]
        smp_best_rate = max(rate for name, rate in forward[size].items() if name.startswith("smp"))
        whole = {}
        one = make_jpegs(scratch / "one", 1)
        run_folder = model.parent  # model.pth and model.int8.onnx side by side: `--runtime auto`'s choice
        rows = (("torch", model, ()), ("torch fp32", model, ("--precision", "fp32")),
                ("onnxruntime fp32", onnx, ()), ("onnxruntime int8", int8, ()),
                ("auto (run folder)", run_folder, ()))  # fmt: skip
        samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in rows}
        for round_number in range(args.process_rounds):  # the rows alternate: a drift falls on all
            for name, file, options in rows if round_number % 2 == 0 else rows[::-1]:
                start_up, _ = predict_process(file, one, scratch / f"out-one-{name}", size, *options)
                seconds, rss = predict_process(file, small, scratch / f"out-small-{name}", size, *options)
                samples[name].append((start_up, seconds, rss))
        for name, file, options in rows:
            start_up = statistics.median(sample[0] for sample in samples[name])
            seconds = statistics.median(sample[1] for sample in samples[name])
            rss = max(sample[2] for sample in samples[name])
            rate = args.images / seconds
            marginal = (args.images - 1) / max(seconds - start_up, 1e-9)
            whole[name] = {
                "seconds": round(seconds, 1),
                "images_per_s": round(rate, 2),
                "ratio_vs_best_smp": round(rate / smp_best_rate, 2),
                "runtime": recorded_runtime(scratch / f"out-small-{name}"),
                "start_up_s": round(start_up, 1),
                "images_per_s_after_start_up": round(marginal, 2),
                f"peak_rss_mib_{args.images}": round(rss),
                "seconds_each_round": [round(sample[1], 2) for sample in samples[name]],
            }
            if name in args.large_runtimes:
                large_seconds, large_rss = predict_process(file, large, scratch / f"out-large-{name}", size,
                                                           *options)  # fmt: skip
                whole[name].update(
                    {
                        f"images_per_s_{args.large}": round(args.large / large_seconds, 2),
                        f"ratio_vs_best_smp_{args.large}": round(
                            args.large / large_seconds / smp_best_rate, 2
                        ),
                        f"peak_rss_mib_{args.large}": round(large_rss),
                        "rss_ratio": round(large_rss / rss, 3),
                    }
                )
            print(name, whole[name], flush=True)
        # smp again after the long whole-process runs: the machine's load drifts; the faster of the
        # two smp figures is the one the ratios use (the conservative choice)
        smp_again = best_rates(smp_forwards(), size, args.batch, 1, args.seconds)
        smp_best_after = max(smp_again.values())
        if smp_best_after > smp_best_rate:
            for values in whole.values():
                for key in [key for key in values if key.startswith("ratio_vs_best_smp")]:
                    values[key] = round(values[key] * smp_best_rate / smp_best_after, 2)
        report[f"smp_at_{size}_after_the_processes"] = smp_again
        report[f"whole_process_at_{size}"] = whole
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
