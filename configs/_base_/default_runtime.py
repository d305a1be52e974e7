# mmpretrain's runtime (hooks, logging, visualizer), keeping the newest checkpoints only,
# with DAT and DAT++ registered as mmpretrain backbones (custom_imports). AtomicCheckpointHook
# (dat/engine) is mmengine's CheckpointHook with writes that a kill cannot break.
_base_ = ['mmpretrain::_base_/default_runtime.py']

custom_imports = dict(imports=['dat.adapters.mmpretrain'], allow_failed_imports=False)
default_hooks = dict(
    checkpoint=dict(type='AtomicCheckpointHook', interval=1, max_keep_ckpts=3),
    # stop at the first NaN/inf loss or gradient (max_skips=N: skip N such steps first)
    nonfinite=dict(type='NonFiniteCheckHook'))
