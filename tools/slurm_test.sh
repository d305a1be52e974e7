#!/usr/bin/env bash
# bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args]
# Honours GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS and GRES (auto: --gres=gpu:
# GPUS_PER_NODE, left out on a partition without GPUs; none: left out; see tools/slurm_srun.sh).
# SIGTERM/SIGINT/SIGUSR1 stop the test cleanly, with exit status 75.
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PY_ARGS=${@:5}
source "$(dirname "$0")/slurm_srun.sh"
export PYTHONPATH="$(dirname $0)/..":$PYTHONPATH

# A missing config, checkpoint or dataset is one line here, before any GPU is asked for
# (DATA_CHECK=0 skips this where the data is on the compute nodes only).
if [ "${DATA_CHECK:-1}" != 0 ]; then
    DAT_CHECK_ONLY=1 python "$(dirname "$0")"/test.py ${CONFIG} ${CHECKPOINT} ${PY_ARGS} || exit $?
fi

set -x
srun "${SRUN_OPTS[@]}" \
    ${SRUN_ARGS} \
    python -u "$(dirname "$0")"/test.py ${CONFIG} ${CHECKPOINT} --launcher="slurm" ${PY_ARGS}
