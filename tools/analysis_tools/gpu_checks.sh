#!/usr/bin/env bash
# The GPU part of docs/benchmarks.md in one go: fast-path tests, the fast vs reference check,
# and the benchmarks of the three goal settings (+ timm Swin-T, + torch.compile) with profiles.
#
#   bash tools/analysis_tools/gpu_checks.sh [check|bench|bench224|bench896|all]  (default: all)
#
# check: about 5-8 minutes on an H100 (FlexAttention compiles); bench: about as long (two
# torch.compile runs); within one 10-minute device call, run them as two calls, or bench as
# bench224 + bench896.
#
# Writes to $OUT (default work_dirs/gpu_checks): env.txt, tests.txt, check_fast_path.txt,
# bench.jsonl, bench.err, profile_224.txt, profile_896.txt; prints a summary table last.
# If a folder .whl exists (wheels of packages the machine lacks, e.g. mmengine), they are
# installed into /tmp/site first. Exit code 1 if a test or the check fails.
# EXTRA_CHECK_ARGS / EXTRA_BENCH_ARGS are appended to the check / benchmark commands (a CPU
# smoke test: EXTRA_CHECK_ARGS="--arch mini --sizes 64" EXTRA_BENCH_ARGS="--batch-size 1
# --img-size 64 --iters 1 --warmup 0 --amp none").
set -uo pipefail
PART=${1:-all}
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

if [ "$PART" = check ] || [ "$PART" = all ]; then
  python3 -m pytest -q -p no:cacheprovider tests/test_models/test_fast_path.py 2>&1 \
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
case $PART in bench|bench224|bench896|all) : > "$OUT/bench.jsonl"; : > "$OUT/bench.err";; esac
case $PART in bench|bench224|all)
  bench --impl reference --batch-size 128 --compare swin
  bench --impl fast --batch-size 128
  bench --impl fast --batch-size 128 --compile
  $B --impl fast --batch-size 128 --mode train --iters 5 --profile ${EXTRA_BENCH_ARGS:-} \
    > /dev/null 2> "$OUT/profile_224.txt";;
esac
case $PART in bench|bench896|all)
  bench --impl reference --batch-size 4 --img-size 896 --mode train --compare swin
  bench --impl fast --batch-size 4 --img-size 896 --mode train
  bench --impl fast --batch-size 4 --img-size 896 --mode train --compile
  $B --impl fast --batch-size 4 --img-size 896 --mode train --iters 5 --profile \
    ${EXTRA_BENCH_ARGS:-} > /dev/null 2> "$OUT/profile_896.txt";;
esac
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
echo "status: $status"
exit $status
