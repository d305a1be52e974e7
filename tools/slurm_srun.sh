#!/usr/bin/env bash
# Sourced by tools/slurm_train.sh and tools/slurm_test.sh: sets SRUN_OPTS, the srun options
# that both launchers pass (partition, job name, GPUs, tasks, CPUs, kill on a bad exit), from
# PARTITION, JOB_NAME, GPUS, GPUS_PER_NODE, CPUS_PER_TASK and GRES (default auto), whose
# --gres argument is:
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

SRUN_OPTS=(-p "${PARTITION}" --job-name="${JOB_NAME}" ${GRES_ARGS} --ntasks="${GPUS}"
           --ntasks-per-node="${GPUS_PER_NODE}" --cpus-per-task="${CPUS_PER_TASK}"
           --kill-on-bad-exit=1)
