#!/usr/bin/env bash
# Issue 21's GPU run in one call: about 6 minutes on an H200, every part under its own time
# limit so that the whole stays under 10 minutes (TOTAL_BUDGET, 560 s).
#
#   bash tools/analysis_tools/gpu_checks.sh [PART ...]     (default: check bench profile compile)
#   SMOKE=1 bash tools/analysis_tools/gpu_checks.sh        (the same parts, tiny, on the CPU,
#                                                           budgets x5: BUDGET_SCALE)
#   bash tools/analysis_tools/gpu_checks.sh wheels         (on a machine with PyPI: fill .whl/)
#
# Parts (budget in seconds; results under $OUT, default work_dirs/gpu_checks, as they come):
#   env      (40, always)  env.txt: GPU, driver, versions; installs the wheels of .whl/ first
#   check    (130) check.txt: tools/analysis_tools/check_fast_path.py, DAT-T and DAT-T++ at
#                  224 and 800x1216, fp32 with TF32 off and bf16 autocast: 'sdpa' against
#                  'reference', outputs and gradients, and the kernels that ran
#   bench    (210) bench.jsonl (+ bench.err): issue 21's table, bf16, 20 timed iterations
#                  after 5, each DAT beside timm's Swin of its size in the same process:
#                  DAT-T train + inference @224 b128, DAT-T train @896 b4, DAT-S and DAT-B
#                  train @224 b128, DAT-T++ train + inference @224 b128; then ratios.txt
#   profile  (50)  profile.txt: the top 15 CUDA kernels of a DAT-T sdpa training step @224 b128
#   compile  (130) compile.jsonl (+ compile.err): DAT-T sdpa under torch.compile, train @224
#                  b128; first_step_s is the compile time (forward and backward)
#   multiscale (120, only when named) multiscale.jsonl: 50 training iterations at detection
#                  sizes, memory after 10 and 50
# A part that runs past its budget is stopped; summary.txt says so and the next part runs.
# Exit code 1 if the check fails or a part fails or is stopped.
#
# The wheels: the GPU machine has torch, timm and einops but not mmengine (and what it
# imports). They travel as the git-ignored folder .whl/ (the device tool's `carry`, about
# 58 MB of the 64 MiB allowed, most of it opencv-python-headless, which is installed only
# where cv2 does not import). Fill it on a machine with PyPI (for Python 3.12, x86_64):
#   bash tools/analysis_tools/gpu_checks.sh wheels
# then run, e.g. with the device tool: command 'bash tools/analysis_tools/gpu_checks.sh',
# carry ['.whl'], timeout_s 600.
set -uo pipefail
export PYTHON=${PYTHON:-python3}
WHEELS=(mmengine==0.10.7 addict yapf termcolor platformdirs rich markdown-it-py mdurl pygments
        opencv-python-headless)
if [[ "${1:-}" == wheels ]]; then
  "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .whl "${WHEELS[@]}"
  exit $?
fi
PARTS=" ${*:-check bench profile compile} "
OUT=${OUT:-work_dirs/gpu_checks}
SMOKE=${SMOKE:-0}
# Every budget times BUDGET_SCALE (SMOKE: 5 by default, a loaded CPU is slow).
BUDGET_SCALE=${BUDGET_SCALE:-$((SMOKE ? 5 : 1))}
TOTAL_BUDGET=${TOTAL_BUDGET:-$((560 * BUDGET_SCALE))}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
status=0
: > "$OUT/summary.txt"
note() { echo "$*" | tee -a "$OUT/summary.txt"; }
budget() {  # budget SECONDS: the part's limit (x BUDGET_SCALE), cut to what is left of
  # TOTAL_BUDGET
  local left=$((TOTAL_BUDGET - SECONDS)) want=$(($1 * BUDGET_SCALE))
  (( left < want )) && echo $((left > 5 ? left : 5)) || echo "$want"
}
part() {  # part NAME SECONDS OUT ERR COMMAND...: COMMAND under its budget, stdout appended
  # to OUT and stderr to ERR (ERR '-': to OUT too); notes the outcome in summary.txt
  local name=$1 limit rc start=$SECONDS out=$3 err=$4
  limit=$(budget "$2"); shift 4
  if declare -F "$1" > /dev/null; then  # a function of this script: in a bash of its own
    set -- bash -c "$(declare -f "$1"); $1"
  fi
  if [[ $err == - ]]; then
    timeout --kill-after=10 "$limit" "$@" >> "$out" 2>&1
  else
    timeout --kill-after=10 "$limit" "$@" >> "$out" 2>> "$err"
  fi
  rc=$?
  if (( rc == 124 || rc == 137 )); then
    note "part $name: stopped at its budget of ${limit}s"; status=1
  elif (( rc != 0 )); then
    note "part $name: failed (exit $rc) after $((SECONDS - start))s"; status=1
  else
    note "part $name: done in $((SECONDS - start))s"
  fi
}

install_wheels() {
  [ -d .whl ] || { echo "no .whl folder: using what is installed"; return 0; }
  local wheels=()
  for wheel in .whl/*.whl; do
    if [[ $wheel == *opencv* ]] && "$PYTHON" -c 'import cv2' 2>/dev/null; then continue; fi
    wheels+=("$wheel")
  done
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "${wheels[@]}"
}
env_report() {
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
    || echo "no nvidia-smi"
  "$PYTHON" -c 'import sys, torch, timm, mmengine; print("python", sys.version.split()[0],
"torch", torch.__version__, "cuda", torch.version.cuda, "timm", timm.__version__,
"mmengine", mmengine.__version__); import dat.models'
  echo "cpus $(nproc)"
}
if (( SMOKE )); then
  note "SMOKE=1: tiny settings on the CPU (a test of this script, not a measurement)"
else
  part wheels 30 "$OUT/wheels.txt" - install_wheels
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
export PYTHONPATH=$PWD:${PYTHONPATH:-}
: > "$OUT/env.txt"
part env 10 "$OUT/env.txt" - env_report
cat "$OUT/env.txt"

if (( SMOKE )); then
  CHECK=(--device cpu --arch mini --sizes 64 --dtypes fp32 --batch-size 1)
  SETTINGS=(--device cpu --iters 1 --warmup 1 --amp none)
  B224=(--batch-size 1 --img-size 64)
  B896=(--batch-size 1 --img-size 96)
  COMPILE=(--compile-backend eager)
  PROFILE=(--device cpu --amp none --iters 1 --warmup 1)
else
  CHECK=(--sizes 224 800x1216)
  SETTINGS=(--amp bf16 --iters 20 --warmup 5)
  B224=(--batch-size 128)
  B896=(--batch-size 4 --img-size 896)
  COMPILE=()
  PROFILE=(--amp bf16 --iters 3 --warmup 2)
fi
want() { [[ $PARTS == *" $1 "* ]]; }

if want check; then
  : > "$OUT/check.txt"
  part check 130 "$OUT/check.txt" - "$PYTHON" tools/analysis_tools/check_fast_path.py \
    --quiet "${CHECK[@]}"
  grep -E '^TF32|^==|->|ALL OK|FAILED' "$OUT/check.txt"
  grep -q '^ALL OK' "$OUT/check.txt" || { note "check: FAILED (check.txt)"; status=1; }
fi

BENCH="$PYTHON tools/analysis_tools/benchmark.py"
bench() {  # bench NAME SECONDS ARGS...: one benchmark command, JSON lines to bench.jsonl
  local name=$1 seconds=$2; shift 2
  echo "== $BENCH $* ${SETTINGS[*]}" >> "$OUT/bench.err"
  part "$name" "$seconds" "$OUT/bench.jsonl" "$OUT/bench.err" $BENCH "$@" "${SETTINGS[@]}"
}
if want bench; then
  : > "$OUT/bench.jsonl"; : > "$OUT/bench.err"
  bench bench-t224 50 --arch tiny --impl sdpa --compare swin "${B224[@]}"
  bench bench-t896 40 --arch tiny --impl sdpa --compare swin --mode train "${B896[@]}"
  bench bench-s224 40 --arch small --impl sdpa --compare swin --mode train "${B224[@]}"
  bench bench-b224 45 --arch base --impl sdpa --compare swin --mode train "${B224[@]}"
  bench bench-tpp224 35 --model datpp --arch tiny --impl sdpa "${B224[@]}"
  "$PYTHON" - "$OUT/bench.jsonl" > "$OUT/ratios.txt" <<'EOF'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.startswith('{')]
print(f'{"model":18s} {"impl":6s} {"mode":9s} {"batch":>5s} {"size":>9s} {"img/s":>9s} '
      f'{"peak GiB":>8s} {"first step s":>12s}')
for r in records:
    print(f'{r["model"]:18s} {r["impl"]:6s} {r["mode"]:9s} {r["batch_size"]:5d} '
          f'{"x".join(map(str, r["img_size"])):>9s} {r["img_per_s"]:9.1f} '
          f'{r["peak_mem_gib"] or float("nan"):8.2f} {r["first_step_s"]:12.1f}')
key = lambda r: (r['mode'], r['batch_size'], tuple(r['img_size']))
print('\nratios (speed: img/s over img/s; memory: peak over peak):')
for r in records:
    family, arch = r['model'].split()[0].split('-')
    controls = {'dat': f'swin-{arch} (timm)', 'datpp': f'dat-{arch}'}
    if family not in controls:
        continue
    for c in records:
        if c['model'] == controls[family] and key(c) == key(r) and c['impl'] in ('timm', r['impl']):
            mem = (f', memory {r["peak_mem_gib"] / c["peak_mem_gib"]:.2f}x'
                   if r['peak_mem_gib'] and c['peak_mem_gib'] else '')
            print(f'  {r["model"]} vs {c["model"]}, {r["mode"]} b{r["batch_size"]} '
                  f'@{"x".join(map(str, r["img_size"]))}: speed '
                  f'{r["img_per_s"] / c["img_per_s"]:.2f}x{mem}')
EOF
  cat "$OUT/ratios.txt"
fi
if want profile; then
  : > "$OUT/profile.txt"
  part profile 50 /dev/null "$OUT/profile.txt" $BENCH --arch tiny --impl sdpa --mode train \
    "${B224[@]}" "${PROFILE[@]}" --profile --profile-rows 15
  grep -A 22 '^== profile' "$OUT/profile.txt" | head -24
fi
if want compile; then
  echo "== $BENCH --arch tiny --impl sdpa --mode train --compile" > "$OUT/compile.err"
  : > "$OUT/compile.jsonl"
  part compile 130 "$OUT/compile.jsonl" "$OUT/compile.err" $BENCH --arch tiny --impl sdpa \
    --mode train --compile "${COMPILE[@]}" "${B224[@]}" "${SETTINGS[@]}"
  cat "$OUT/compile.jsonl"
fi
if want multiscale; then
  : > "$OUT/multiscale.jsonl"
  part multiscale 120 "$OUT/multiscale.jsonl" "$OUT/multiscale.err" "$PYTHON" \
    tools/analysis_tools/multiscale_check.py --impl auto ${EXTRA_MULTISCALE_ARGS:-}
  cat "$OUT/multiscale.jsonl"
fi
note "total: ${SECONDS}s; status: $status"
exit $status
