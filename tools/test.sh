#!/usr/bin/env bash
# ImageNet evaluation of a checkpoint; prints Acc@1 and Acc@5 (in %).
#   bash tools/test.sh CONFIG CHECKPOINT [GPUS] [test.py args]
# GPUS (default 1) > 1 runs tools/dist_test.sh (NNODES, NODE_RANK, PORT, MASTER_ADDR apply).
# Without a GPU the processes run on the CPU (gloo).
set -o pipefail
if [ $# -lt 2 ]; then
    echo "usage: bash tools/test.sh CONFIG CHECKPOINT [GPUS] [test.py args]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
shift 2
GPUS=1
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    GPUS=$1
    shift
fi
DIR=$(dirname "$0")
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

if [ "$GPUS" -gt 1 ]; then
    bash "$DIR/dist_test.sh" "$CONFIG" "$CHECKPOINT" "$GPUS" "$@" 2>&1 | tee "$LOG"
else
    PYTHONPATH="$DIR/..":$PYTHONPATH python "$DIR/test.py" "$CONFIG" "$CHECKPOINT" "$@" 2>&1 \
        | tee "$LOG"
fi
STATUS=$?
if [ $STATUS -ne 0 ]; then
    exit $STATUS
fi
# tools/test.py ends with the line "accuracy/top1: 81.9860 accuracy/top5: 95.8000 ..."
python - "$LOG" <<'PY'
import re
import sys

text = open(sys.argv[1]).read()
top = {k: re.findall(rf'accuracy/top{k}: ([0-9.]+)', text) for k in (1, 5)}
if not top[1]:
    sys.exit('error: no accuracy/top1 in the output of tools/test.py; does the config '
             "use test_evaluator = dict(type='Accuracy', topk=(1, 5))?")
acc5 = f'{float(top[5][-1]):.2f}' if top[5] else 'n/a'
print(f'Acc@1 {float(top[1][-1]):.2f} Acc@5 {acc5}')
PY
