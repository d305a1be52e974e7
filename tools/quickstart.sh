#!/usr/bin/env bash
# Quick start, no download: generate the shapes dataset (if absent), train a mini DAT with
# L, S and D blocks on it, evaluate it with tools/test.sh and print its top-1 accuracy.
#   bash tools/quickstart.sh
# Environment: DATA (default data/shapes), WORK_DIR (default work_dirs/dat-mini_1xb32_shapes).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=configs/dat/dat-mini_1xb32_shapes.py
DATA=${DATA:-data/shapes}
WORK_DIR=${WORK_DIR:-work_dirs/dat-mini_1xb32_shapes}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

start=$(date +%s)
if [ ! -f "$DATA/meta/val.txt" ]; then
    python tools/dataset_converters/make_shapes_dataset.py "$DATA"
fi
ROOTS="train_dataloader.dataset.data_root=$DATA val_dataloader.dataset.data_root=$DATA"
ROOTS="$ROOTS test_dataloader.dataset.data_root=$DATA"

python tools/train.py "$CONFIG" --work-dir "$WORK_DIR" --cfg-options $ROOTS
CHECKPOINT=$(cat "$WORK_DIR/last_checkpoint")
RESULT=$(bash tools/test.sh "$CONFIG" "$CHECKPOINT" --work-dir "$WORK_DIR/test" \
    --cfg-options $ROOTS | tail -n 1)
echo
echo "quick start: $RESULT on $(wc -l < "$DATA/meta/val.txt") held-out images," \
    "6 classes (chance 16.67), $(( $(date +%s) - start )) s"
echo "checkpoint: $CHECKPOINT"
