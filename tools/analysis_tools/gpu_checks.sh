#!/usr/bin/env bash
# The GPU part of docs/benchmarks.md in one go: fast-path tests, the sdpa/flex vs reference
# check (FlexAttention forward and backward on the GPU), the benchmarks of the three goal
# settings (+ timm Swin-T, + torch.compile) with profiles, and a multi-scale training run
# (memory after 10 and 50 iterations at random detection sizes, sdpa and flex).
#
#   bash tools/analysis_tools/gpu_checks.sh [PART ...]   (default: all)
#   PART: check | bench | bench224 | bench896 | multiscale | all
#
# check: about 5-8 minutes on an H100 (FlexAttention compiles); bench: about as long (two
# torch.compile runs); multiscale: a few minutes (FlexAttention compiles a graph per token
# bucket). Within one 10-minute device call, run them as separate calls, bench possibly as
# bench224 + bench896.
#
# Writes to $OUT (default work_dirs/gpu_checks): env.txt, tests.txt, check_fast_path.txt,
# bench.jsonl, bench.err, profile_224.txt, profile_896.txt, multiscale.jsonl,
# multiscale.err; prints summary tables last.
# If a folder .whl exists (wheels of packages the machine lacks, e.g. mmengine), they are
# installed into /tmp/site first. Exit code 1 if a test, the check or a multi-scale run
# fails (memory allocated after 50 iterations more than 10% above that after 10).
# EXTRA_CHECK_ARGS / EXTRA_BENCH_ARGS / EXTRA_MULTISCALE_ARGS are appended to the check /
# benchmark / multi-scale commands. A CPU smoke test of every part:
#   OUT=/tmp/gpu_smoke EXTRA_CHECK_ARGS="--arch mini --sizes 64 --dtypes fp32" \
#   EXTRA_BENCH_ARGS="--batch-size 1 --img-size 64 --iters 1 --warmup 0 --amp none" \
#   EXTRA_MULTISCALE_ARGS="--device cpu --iters 3 --report-at 2 --scale 0.1 --batch-size 1 \
#   --amp none" bash tools/analysis_tools/gpu_checks.sh all
set -uo pipefail
PARTS=" ${*:-all} "
want() {  # want PART...: whether one of the PARTs (or all) was asked for
  for part in all "$@"; do [[ $PARTS == *" $part "* ]] && return 0; done
  return 1
}
OUT=${OUT:-work_dirs/gpu_checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
status=0

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  python3 -c 'import torch, timm, sys; print("python", sys.version.split()[0], "torch",
torch.__version__, "cuda", torch.version.cuda, "timm", timm.__version__)'
  nproc
} 2>&1 | tee "$OUT/env.txt"

if want check; then
  python3 -m pytest -q -p no:cacheprovider tests/test_models/test_fast_path.py \
    tests/test_models/test_size_caches.py 2>&1 \
    | tail -5 | tee "$OUT/tests.txt"
  grep -q ' passed' "$OUT/tests.txt" && ! grep -q 'failed' "$OUT/tests.txt" || status=1
  python3 tools/analysis_tools/check_fast_path.py --quiet ${EXTRA_CHECK_ARGS:-} 2>&1 \
    | tee "$OUT/check_fast_path.txt" | grep -E '^==|->|FlexAttention [0-9]|ALL OK|FAILED'
  grep -q '^ALL OK' "$OUT/check_fast_path.txt" || status=1
fi

B="python3 tools/analysis_tools/benchmark.py --arch tiny --amp bf16"
bench() {  # one benchmark command, JSON lines to bench.jsonl
  echo "== $B $*" >> "$OUT/bench.err"
  $B "$@" ${EXTRA_BENCH_ARGS:-} 2>> "$OUT/bench.err" | tee -a "$OUT/bench.jsonl"
}
if want bench bench224 bench896; then : > "$OUT/bench.jsonl"; : > "$OUT/bench.err"; fi
# At 224 px no deformable block has enough keys for FlexAttention: flex runs as sdpa there.
if want bench bench224; then
  bench --impl reference --batch-size 128 --compare swin
  bench --impl sdpa --batch-size 128
  bench --impl sdpa --batch-size 128 --compile
  $B --impl sdpa --batch-size 128 --mode train --iters 5 --profile ${EXTRA_BENCH_ARGS:-} \
    > /dev/null 2> "$OUT/profile_224.txt"
fi
if want bench bench896; then
  bench --impl reference --batch-size 4 --img-size 896 --mode train --compare swin
  bench --impl sdpa --batch-size 4 --img-size 896 --mode train
  bench --impl flex --batch-size 4 --img-size 896 --mode train
  bench --impl flex --batch-size 4 --img-size 896 --mode train --compile
  $B --impl flex --batch-size 4 --img-size 896 --mode train --iters 5 --profile \
    ${EXTRA_BENCH_ARGS:-} > /dev/null 2> "$OUT/profile_896.txt"
fi
if want multiscale; then
  : > "$OUT/multiscale.jsonl"; : > "$OUT/multiscale.err"
  for impl in auto flex; do  # auto: sdpa on CUDA
    M="python3 tools/analysis_tools/multiscale_check.py --impl $impl"
    echo "== $M ${EXTRA_MULTISCALE_ARGS:-}" >> "$OUT/multiscale.err"
    $M ${EXTRA_MULTISCALE_ARGS:-} 2>> "$OUT/multiscale.err" | tee -a "$OUT/multiscale.jsonl" \
      || status=1
  done
fi
if [ -s "$OUT/bench.jsonl" ]; then
  python3 - "$OUT/bench.jsonl" <<'EOF'
import json, sys
print(f'\n{"model":18s} {"impl":9s} {"compile":7s} {"mode":9s} {"batch":>5s} {"size":>9s} '
      f'{"img/s":>9s} {"peak GiB":>8s}')
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f'{r["model"]:18s} {r["impl"]:9s} {str(r["compile"]):7s} {r["mode"]:9s} '
          f'{r["batch_size"]:5d} {"x".join(map(str, r["img_size"])):>9s} '
          f'{r["img_per_s"]:9.1f} {r["peak_mem_gib"] or float("nan"):8.2f}')
EOF
fi
if [ -s "$OUT/multiscale.jsonl" ]; then
  python3 tools/analysis_tools/multiscale_check.py --summarize "$OUT/multiscale.jsonl"
fi
echo "status: $status"
exit $status
