# The DAT++ detection recipe's batch and lr (LeapLabTHU/DAT-Detection@4d4023d,
# configs/dat/*_4n_*.py and cmrcn_base_3x_8n_*.py): 64 images a batch (4 nodes x 8 GPUs x 2
# images; DAT-B++ cascade: 8 nodes x 8 GPUs x 1; README.md: "4 nodes of NVIDIA A100 GPU
# (40GB) ... the learning rates are scaled to 4 times of the default values",
# tools/slurm_train.sh: GPUS_PER_NODE=8), lr 4e-4 (RetinaNet 2e-4, set by its configs), on
# schedule_adamw_amp-1x.py (the same AdamW, weight decay, 500 warm-up iterations from 0.001
# and steps). The config names say the batch (32xb2, 64xb1); with fewer GPUs, --auto-scale-lr
# scales the lr from base_batch_size=64.
_base_ = './schedule_adamw_amp-1x.py'

optim_wrapper = dict(optimizer=dict(lr=4e-4))
auto_scale_lr = dict(base_batch_size=64)
