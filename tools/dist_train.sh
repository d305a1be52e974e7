#!/usr/bin/env bash
# bash tools/dist_train.sh CONFIG GPUS [train.py args]
# Honours NNODES, NODE_RANK, PORT and MASTER_ADDR. Without GPUs, GPUS processes run on the CPU.
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

# A missing config is one line here, not one per process plus the launcher's report.
if [ ! -f "$CONFIG" ]; then
    echo "error: no such config: $CONFIG" >&2
    exit 1
fi

PYTHONPATH="$(dirname $0)/..":$PYTHONPATH \
python -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS \
    --master_port=$PORT \
    $(dirname "$0")/train.py \
    $CONFIG \
    --launcher pytorch ${@:3}
