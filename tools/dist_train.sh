#!/usr/bin/env bash
# bash tools/dist_train.sh CONFIG GPUS [train.py args]
# Honours NNODES, NODE_RANK, PORT and MASTER_ADDR. Without GPUs, GPUS processes run on the CPU.
# SIGTERM, SIGINT and SIGUSR1 (and DAT_STOP_SIGNALS) go to every training process: they save an
# iteration checkpoint and stop, and this script then exits with 75 (docs/faults.md).
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

# torchrun runs in a session of its own, so that a Ctrl-C reaches the training processes
# through the trap below only (torchrun would kill them 30 s after its own SIGINT).
PYTHONPATH="$(dirname $0)/..":$PYTHONPATH \
setsid python -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS \
    --master_port=$PORT \
    $(dirname "$0")/train.py \
    $CONFIG \
    --launcher pytorch ${@:3} &
LAUNCHER=$!
STOPPED=0
forward() {  # to the training processes, the children of torchrun
    STOPPED=1
    pkill -"$1" -P "$LAUNCHER" 2>/dev/null
}
for sig in TERM INT USR1 ${DAT_STOP_SIGNALS//,/ }; do
    trap "forward ${sig#SIG}" "${sig#SIG}"
done
while true; do
    wait "$LAUNCHER"
    rc=$?
    kill -0 "$LAUNCHER" 2>/dev/null || break  # else a trapped signal interrupted the wait
done
# the processes saved and exited with 0 (docs/faults.md): the run was stopped, not finished
[ "$STOPPED" = 1 ] && [ "$rc" = 0 ] && exit 75
exit $rc
