#!/usr/bin/env bash
# The GPU check of issue 12: one script, no network, about 6-7 minutes on one H100.
#   1. the CUDA-only tests, tests/test_cuda.py: bf16 and fp16 AMP, channels_last, torch.compile,
#      pinned memory, SyncBatchNorm in a one-process NCCL group, predict on the GPU vs the CPU
#   2. the training step, fastseg vs smp Unet("vgg16_bn", encoder_weights=None), bf16 autocast +
#      channels_last, batch 32, at the seed (224²) and fast (320²) recipes' inputs
#   3. predict img/s: the whole `fastseg predict` process on 256 VOC-sized JPEGs at 512², and the
#      model's forward alone on ready tensors
#   4. `fastseg train --recipe fast` on generated VOC-format data for 3 minutes (Ctrl-C at 180 s
#      if it has not finished: the run saves a checkpoint and the figures are read from it)
#   5. every figure in benchmarks/results/<date>-<gpu>.json
#
# Usage:
#   benchmarks/gpu_check.sh                    on the GPU machine
#   benchmarks/gpu_check.sh --device cpu --quick [--out DIR]
#                                              the same steps, tiny, on a CPU (tests/test_gpu_check.py)
#   benchmarks/gpu_check.sh --fetch-wheels     here, where a package registry answers: download
#                                              what the GPU image lacks into .wheels/
#
# The GPU machine has no network and only a copy of the working tree (64 MiB at most, so a 6 GB
# .venv cannot travel). Its python3 holds torch, torchvision, accelerate, pandas, scipy, click,
# pillow and pytest, not fastai or segmentation_models_pytorch: those (pure Python, pinned in
# benchmarks/gpu_wheels.txt) are installed offline from .wheels/, carried with
# `run(carry=[".wheels"], command="bash benchmarks/gpu_check.sh")`. fastseg itself runs from this
# tree through PYTHONPATH, not installed. Python: $PYTHON, else .venv/bin/python when present,
# else python3; the wheels: $GPU_CHECK_WHEELS, else .wheels. Anything missing stops the script in
# one line before any step runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DEVICE=cuda QUICK=0 OUT=benchmarks/results FETCH=0 TRAIN_SECONDS=180 WHEELS=${GPU_CHECK_WHEELS:-.wheels}
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    --train-seconds) TRAIN_SECONDS=$2; shift 2 ;;
    --fetch-wheels) FETCH=1; shift ;;
    *) echo "gpu_check: unknown option $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=$(command -v python3 || true)
fi
[ -n "$PY" ] && [ -x "$PY" ] || { echo "gpu_check: no Python found (set PYTHON, or make .venv)" >&2; exit 2; }

if [ "$FETCH" = 1 ]; then
  # For the GPU image's Python (3.12, x86_64: KINDS.md of the device tool); plum-dispatch is compiled.
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "${GPU_PYTHON:-3.12}" \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$WHEELS" -r benchmarks/gpu_wheels.txt
  echo "gpu_check: $(ls "$WHEELS" | wc -l) wheels in $WHEELS/ ($(du -sh "$WHEELS" | cut -f1)); carry $WHEELS"
  exit 0
fi

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
missing() { "$PY" - <<'EOF'
import importlib.util
names = {"torch": "torch", "fastai": "fastai", "segmentation_models_pytorch": "segmentation-models-pytorch",
         "click": "click", "accelerate": "accelerate", "pandas": "pandas", "pytest": "pytest"}
print(" ".join(package for module, package in names.items() if importlib.util.find_spec(module) is None))
EOF
}
MISSING=$(missing)
if [ -n "$MISSING" ] && [ -d "$WHEELS" ]; then
  "$PY" -m pip install --quiet --no-index --no-deps --find-links "$WHEELS" -r benchmarks/gpu_wheels.txt \
    || { echo "gpu_check: offline install from $WHEELS failed (see above)" >&2; exit 2; }
  MISSING=$(missing)
fi
if [ -n "$MISSING" ]; then
  echo "gpu_check: $PY lacks $MISSING: run benchmarks/gpu_check.sh --fetch-wheels where a registry answers, then carry $WHEELS" >&2
  exit 2
fi
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_check: $PY's torch sees no CUDA device (use --device cpu --quick for a rehearsal)" >&2
  exit 2
fi

if [ "$QUICK" = 1 ]; then
  STEP=(--batch-size 2 --steps 1 --size 64 --recipes seed)  # batch 1 at 32² leaves BatchNorm one value
  PREDICT=(--images 2 --size 32 --batch-size 1)
  DATA=(--images 12 --side-range 32 40)
  TRAIN=(--size 32 --crop-size 32 --epochs 1 --batch-size 4 --num-workers 0)
else
  STEP=(--batch-size 32 --steps 20 --recipes seed fast)
  PREDICT=(--images 256 --size 512 --batch-size 32)
  DATA=(--images 480 --side-range 375 500)
  TRAIN=(--epochs 40 --batch-size 32)
fi

PARTS=$(mktemp -d)
trap 'rm -rf "$PARTS"' EXIT
started=$SECONDS
stage() { echo "gpu_check: [$((SECONDS - started)) s] $*"; }

stage "1/5 CUDA-only tests"
set +e
"$PY" -m pytest tests/test_cuda.py -q -p no:cacheprovider -rs > "$PARTS/pytest.log" 2>&1
TESTS_RC=$?
set -e
tail -n 15 "$PARTS/pytest.log"
"$PY" -c 'import json, sys; lines = open(sys.argv[1]).read().strip().splitlines()
json.dump({"exit_code": int(sys.argv[2]), "summary": lines[-1] if lines else ""}, open(sys.argv[3], "w"))' \
  "$PARTS/pytest.log" "$TESTS_RC" "$PARTS/cuda_tests.json"

stage "2/5 training step vs smp Unet"
"$PY" benchmarks/train_throughput.py --device "$DEVICE" --step-only "${STEP[@]}" --json "$PARTS/train_step.json" > /dev/null

stage "3/5 predict throughput"
"$PY" benchmarks/gpu_check.py predict --device "$DEVICE" "${PREDICT[@]}" --json "$PARTS/predict.json"

stage "4/5 fastseg train --recipe fast on generated data (at most $TRAIN_SECONDS s)"
DATA_DIR="$PARTS/data" RUN_DIR="$PARTS/run"
"$PY" benchmarks/gpu_check.py data "$DATA_DIR" "${DATA[@]}"
images=$(wc -l < "$DATA_DIR/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt")
train_started=$SECONDS
set +e
timeout --signal=INT --kill-after=60 "$TRAIN_SECONDS" "$PY" -m fastseg train --data "$DATA_DIR" --out "$RUN_DIR" \
  --recipe fast --train-set train --no-pretrained --device "$DEVICE" --quiet "${TRAIN[@]}" > "$PARTS/train.log" 2>&1
TRAIN_RC=$?
set -e
tail -n 3 "$PARTS/train.log"
"$PY" benchmarks/gpu_check.py training "$RUN_DIR" --seconds $((SECONDS - train_started)) --exit-code "$TRAIN_RC" \
  --images "$images" --json "$PARTS/training.json"

stage "5/5 results"
mkdir -p "$OUT"
RESULT=$("$PY" benchmarks/gpu_check.py summary "$PARTS" --out "$OUT" --device "$DEVICE")
stage "done: $RESULT"
[ "$TESTS_RC" = 0 ] || { echo "gpu_check: CUDA tests failed (exit $TESTS_RC); figures written all the same" >&2; exit 1; }
