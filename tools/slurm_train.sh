#!/usr/bin/env bash
# bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]
# Honours GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS and GRES (auto: --gres=gpu:
# GPUS_PER_NODE, left out on a partition without GPUs; none: left out; see tools/slurm_srun.sh).
#
# Preemption (docs/faults.md): Slurm sends SIGNAL (USR1) SIGNAL_TIME (120) seconds before the
# time limit, and scancel --signal=USR1 sends it at once; the job saves an iteration checkpoint
# and exits with 75, and the script then queues the job again (REQUEUE=1): a new srun, or
# `scontrol requeue` when the script runs inside an sbatch job; the new job resumes from
# WORK_DIR without --resume. REQUEUE=0 switches that off (the job still saves and stops). A
# plain scancel (SIGTERM) or Ctrl-C saves and stops too, and is not requeued.
# DATA_CHECK=0 skips the check, on this machine, that the config's data exists.
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
SIGNAL=${SIGNAL:-USR1}
SIGNAL_TIME=${SIGNAL_TIME:-120}
REQUEUE=${REQUEUE:-1}
PY_ARGS=${@:5}
source "$(dirname "$0")/slurm_srun.sh"
export PYTHONPATH="$(dirname $0)/..":$PYTHONPATH
export DAT_STOP_SIGNALS=${SIGNAL}
case "$SIGNAL" in  # the name that train.py writes into WORK_DIR/stopped_by
    [0-9]*) REQUEUE_ON=SIG$(kill -l "$SIGNAL") ;;
    *) REQUEUE_ON=SIG${SIGNAL#SIG} ;;
esac

# A missing config or dataset is one line here, before any GPU is asked for.
if [ "${DATA_CHECK:-1}" != 0 ]; then
    DAT_CHECK_ONLY=1 python "$(dirname "$0")"/train.py ${CONFIG} --work-dir=${WORK_DIR} \
        ${PY_ARGS} || exit $?
fi

set -x
while true; do
    rm -f "${WORK_DIR}/stopped_by"
    srun "${SRUN_OPTS[@]}" \
        --signal=${SIGNAL}@${SIGNAL_TIME} \
        ${SRUN_ARGS} \
        python -u "$(dirname "$0")"/train.py ${CONFIG} --work-dir=${WORK_DIR} --launcher="slurm" ${PY_ARGS}
    rc=$?
    { set +x; } 2>/dev/null
    if [ "$rc" != 75 ] || [ "$REQUEUE" = 0 ] ||
            [ "$(cat "${WORK_DIR}/stopped_by" 2>/dev/null)" != "$REQUEUE_ON" ]; then
        exit $rc
    fi
    if [ -n "${SLURM_JOB_ID:-}" ]; then  # inside a batch job: the same job, queued again
        # (the requeued job has SLURM_RESTART_COUNT > 0, so train.py resumes)
        echo "slurm_train.sh: stopped and saved; requeueing job ${SLURM_JOB_ID}"
        scontrol requeue "${SLURM_JOB_ID}" || exit $?
        exit 75
    fi
    echo "slurm_train.sh: stopped and saved; requeueing: a new job resumes from ${WORK_DIR}"
    export DAT_AUTO_RESUME=1
    set -x
done
