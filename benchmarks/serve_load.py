"""`fastseg serve` under load, against `fastseg predict` and a naive server, in the same run.

- serve (batched): `fastseg serve MODEL` as users start it (`--max-batch 8 --max-wait-ms 10`);
  1, 4, 16 and 64 concurrent httpx clients, each sending VOC-sized JPEGs (500x375) as fast as
  answers come, for a fixed time per level: requests/s, p50/p95/p99 latency, errors (non-200
  answers and failed connections; must be 0), the server's peak RSS (VmHWM);
- naive: the same server with dynamic batching off (`--max-batch 1 --max-wait-ms 0`): one
  request, one forward pass: a hand-written Flask wrapper's shape;
- predict: one whole `fastseg predict` process on the same files (images/s including start-up,
  and without it: its images over the wall time less a `--help`-free start of the same model);
- soak (`--soak SECONDS`): 16 clients on the batched server; RSS after warm-up against RSS at the
  end, and errors.

All traffic goes to 127.0.0.1; every level is bounded in time and the servers are stopped at the
end (also on Ctrl-C). The goal in issue #23: at 16 clients, batched requests/s at least predict's
images/s, and p95 latency under 2x the 1-client p50.

    python benchmarks/serve_load.py --model RUN [--seconds 20] [--levels 1 4 16 64] [--soak 600]
    python benchmarks/serve_load.py --make-model 224 --seconds 5 --levels 1 4   # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from shared import predict_arguments, seconds_and_peak_rss, untrained_model  # beside this script

from fastseg.errors import FastsegError
from fastseg.serving.readiness import served_process

ROOT = Path(__file__).resolve().parents[1]


def make_jpegs(folder: Path, count: int) -> list[Path]:
    """VOC-sized photos-ish: a gradient, a few shapes, mild noise (JPEG sizes like real ones)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows, columns = np.mgrid[0:375, 0:500]
    paths = []
    for index in range(count):
        base = rng.uniform(40, 200, 3)
        pixels = np.stack([base[0] + columns * 0.1, base[1] + rows * 0.1, base[2] - columns * 0.05], axis=-1)
        for _ in range(3):
            top, left = rng.integers(0, 300), rng.integers(0, 420)
            pixels[top : top + rng.integers(30, 120), left : left + rng.integers(30, 150)] = rng.uniform(
                0, 255, 3
            )
        pixels += rng.normal(0, 8, pixels.shape)
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def make_model(folder: Path, size: int) -> Path:
    """An untrained VGG16-BN U-Net of 21 classes at `size`² (the same cost as a trained one)."""
    import torch

    torch.manual_seed(0)
    return untrained_model(folder / "model.pth", size)


def fastseg_command() -> list[str]:
    return [sys.executable, "-c", "from cli.main import main; main()"]


def memory_kib(pid: int, field: str) -> int:
    """`VmRSS` (now) or `VmHWM` (peak) of a process, in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def load(url: str, payloads: list[bytes], clients: int, seconds: float) -> dict:
    """`clients` loops, each sending the next image as soon as its answer came, for `seconds`."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(number: int, http: httpx.AsyncClient) -> None:
        order = random.Random(number)
        while time.perf_counter() < stop:
            data = payloads[order.randrange(len(payloads))]
            started = time.perf_counter()
            try:
                response = await http.post(
                    "/v1/segment", content=data, headers={"content-type": "image/jpeg"}
                )
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                    continue
                key = str(response.status_code)
            except httpx.HTTPError as error:
                key = type(error).__name__
            errors[key] = errors.get(key, 0) + 1

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(number, http) for number in range(clients)))
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [0] * 99
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "p50_ms": round(1000 * quantiles[49], 1),
        "p95_ms": round(1000 * quantiles[94], 1),
        "p99_ms": round(1000 * quantiles[98], 1),
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


def run_levels(model: Path, payloads: list[bytes], levels: list[int], seconds: float, *options: str) -> dict:
    with served_process(model, *options) as served:  # on a free port of 127.0.0.1
        url, pid = served.url, served.process.pid
        asyncio.run(load(url, payloads, 1, min(3.0, seconds)))  # warm the allocator and caches
        warm_rss = memory_kib(pid, "VmRSS")
        rows = []
        for clients in levels:
            row = asyncio.run(load(url, payloads, clients, seconds))
            row["peak_rss_mib"] = round(memory_kib(pid, "VmHWM") / 1024, 1)
            rows.append(row)
            print(
                f"  {clients:3d} clients: {row['requests_per_s']:7.2f} req/s  p50 {row['p50_ms']:7.1f} ms  "
                f"p95 {row['p95_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  errors {row['errors']}  "
                f"peak RSS {row['peak_rss_mib']} MiB",
                flush=True,
            )
    return {"options": list(options), "rss_after_warm_up_mib": round(warm_rss / 1024, 1), "levels": rows}


def soak(model: Path, payloads: list[bytes], seconds: float, clients: int = 16) -> dict:
    """`clients` clients for `seconds`: RSS after a warm-up minute (or a tenth) against the end."""
    warm = min(60.0, seconds / 10)
    with served_process(model) as served:
        url, pid = served.url, served.process.pid
        asyncio.run(load(url, payloads, clients, warm))
        after_warm_up = memory_kib(pid, "VmRSS")
        row = asyncio.run(load(url, payloads, clients, seconds))
        at_end = memory_kib(pid, "VmRSS")
    growth = at_end / after_warm_up - 1
    print(
        f"  soak {seconds:.0f} s at {clients} clients: "
        f"RSS {after_warm_up / 1024:.0f} -> {at_end / 1024:.0f} MiB "
        f"({100 * growth:+.1f} %), {row['requests']} requests, errors {row['errors']}",
        flush=True,
    )
    return {
        **row,
        "rss_after_warm_up_mib": round(after_warm_up / 1024, 1),
        "rss_at_end_mib": round(at_end / 1024, 1),
        "rss_growth": round(growth, 4),
    }


def predict_process(model: Path, images: Path, out: Path) -> dict:
    """One whole `fastseg predict` process: wall seconds, images/s, peak RSS."""
    seconds, rss_mib = seconds_and_peak_rss(
        [*fastseg_command(), *predict_arguments(model, images, out)], cwd=ROOT
    )
    count = len(list(images.glob("*.jpg")))
    return {
        "images": count,
        "seconds": round(seconds, 2),
        "images_per_s": round(count / seconds, 2),
        "peak_rss_mib": round(rss_mib, 1),
    }


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def cpu_flags() -> list[str]:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(flag for flag in line.split() if flag.startswith(("avx512", "amx", "avx2")))
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="A run folder, model.pth or .onnx.")
    parser.add_argument(
        "--make-model", type=int, metavar="SIZE", help="An untrained 21-class model at SIZE²."
    )
    parser.add_argument("--images", type=int, default=64, help="Distinct JPEGs the clients send.")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--seconds", type=float, default=20.0, help="Seconds per concurrency level.")
    parser.add_argument(
        "--soak", type=float, default=0.0, help="Soak seconds at 16 clients (600 in the issue)."
    )
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--out", type=Path, help="Write the figures as JSON.")
    arguments = parser.parse_args()
    if (arguments.model is None) == (arguments.make_model is None):
        parser.error("give --model or --make-model")
    with tempfile.TemporaryDirectory(prefix="fastseg-serve-load-") as scratch:
        scratch = Path(scratch)
        model = arguments.model or make_model(scratch, arguments.make_model)
        paths = make_jpegs(scratch / "images", arguments.images)
        payloads = [path.read_bytes() for path in paths]
        results: dict = {
            "cpu": cpu_model(),
            "cpu_flags": cpu_flags(),
            "cores": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "torch_threads": None,
            "model": str(arguments.model or f"untrained 21-class VGG16-BN U-Net at {arguments.make_model}"),
            "images": len(paths),
            "image_size": "500x375 JPEG",
            "seconds_per_level": arguments.seconds,
            "date": time.strftime("%Y-%m-%d"),
        }
        import torch

        results["torch_threads"] = torch.get_num_threads()
        print(f"predict (whole process, {len(paths)} images):", flush=True)
        results["predict"] = predict_process(model, scratch / "images", scratch / "masks")
        print(
            f"  {results['predict']['images_per_s']} images/s, {results['predict']['seconds']} s, "
            f"peak RSS {results['predict']['peak_rss_mib']} MiB",
            flush=True,
        )
        print("serve, dynamic batching (--max-batch 8 --max-wait-ms 10):", flush=True)
        results["batched"] = run_levels(model, payloads, arguments.levels, arguments.seconds)
        if not arguments.skip_naive:
            print("serve, naive (--max-batch 1 --max-wait-ms 0: one request, one forward):", flush=True)
            results["naive"] = run_levels(
                model, payloads, arguments.levels, arguments.seconds, "--max-batch", "1", "--max-wait-ms", "0"
            )
        if arguments.soak:
            results["soak"] = soak(model, payloads, arguments.soak)
        batched = {row["clients"]: row for row in results["batched"]["levels"]}
        if 16 in batched and 1 in batched:
            goal = {
                "requests_per_s_16_vs_predict_images_per_s": round(
                    batched[16]["requests_per_s"] / results["predict"]["images_per_s"], 2
                ),
                "p95_16_vs_p50_1": round(batched[16]["p95_ms"] / batched[1]["p50_ms"], 2),
            }
            results["goal"] = goal
            print(
                "goal: 16-client req/s / predict images/s = "
                f"{goal['requests_per_s_16_vs_predict_images_per_s']} "
                f"(>= 1), p95 at 16 / p50 at 1 = {goal['p95_16_vs_p50_1']} (< 2)",
                flush=True,
            )
    if arguments.out:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    try:
        main()
    except FastsegError as error:  # a server that did not start: the end of its output
        raise SystemExit(f"serve_load: {error}") from None
