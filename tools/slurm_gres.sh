#!/usr/bin/env bash
# Sourced by tools/slurm_train.sh and tools/slurm_test.sh: sets GRES_ARGS, the --gres
# argument of srun, from GRES (default auto), PARTITION and GPUS_PER_NODE.
#   GRES=auto      --gres=gpu:$GPUS_PER_NODE, unless `sinfo` lists no GPU on the partition:
#                  there srun fails with "Invalid generic resource (gres) specification",
#                  so --gres is left out
#   GRES=none      no --gres (partitions without GPUs, CPU jobs)
#   GRES=gpu:a100:8 (anything else)   --gres=$GRES
GRES=${GRES:-auto}
if [ "$GRES" = auto ]; then
    GRES=gpu:${GPUS_PER_NODE}
    PARTITION_GRES=$(sinfo -h -p "${PARTITION}" -o %G 2>/dev/null)
    if [ -n "$PARTITION_GRES" ] && ! echo "$PARTITION_GRES" | grep -q gpu; then
        echo "partition ${PARTITION} has no GPUs (gres: ${PARTITION_GRES}): srun without --gres" >&2
        GRES=none
    fi
fi
if [ "$GRES" = none ]; then
    GRES_ARGS=""
else
    GRES_ARGS="--gres=${GRES}"
fi
