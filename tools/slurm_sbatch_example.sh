#!/usr/bin/env bash
# A batch job that trains CONFIG into WORK_DIR. Submit it from the root of the repository:
#
#   sbatch -p PARTITION tools/slurm_sbatch_example.sh CONFIG WORK_DIR [train.py args]
#
# It trains with --resume: a job that was cancelled, preempted or ran out of time continues
# from the latest checkpoint in WORK_DIR when it is submitted again (from scratch if there is
# none). The #SBATCH lines ask for one node with 8 GPUs; options given to sbatch override them,
# e.g. `--nodes=2 --ntasks=16` for two nodes, `--output=FILE` for the log, and
# `--gres=none --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1` for two CPU processes on a
# partition without GPUs.
#SBATCH --job-name=dat-train
#SBATCH --nodes=1
#SBATCH --ntasks=8
#SBATCH --ntasks-per-node=8
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=5
#SBATCH --output=%x-%j.out
set -x

CONFIG=$1
WORK_DIR=$2
PY_ARGS=${@:3}

# sbatch runs a copy of this file, from the directory it was submitted from
PYTHONPATH="$PWD":$PYTHONPATH \
srun --kill-on-bad-exit=1 \
    python -u tools/train.py ${CONFIG} --work-dir=${WORK_DIR} --launcher="slurm" --resume ${PY_ARGS}
