# mmpretrain's runtime (hooks, logging, visualizer), keeping the newest checkpoints only,
# with DAT and DAT++ registered as mmpretrain backbones (custom_imports). AtomicCheckpointHook
# (dat/engine) is mmengine's CheckpointHook with writes that a kill cannot break.
_base_ = ['mmpretrain::_base_/default_runtime.py']

# dat.apply_mmengine_patches: the libraries' own train/test tools then read checkpoints
# as ours do (mmengine 0.10.7's reader refuses its Runner's checkpoints under torch >= 2.6).
custom_imports = dict(imports=['dat.adapters.mmpretrain', 'dat.apply_mmengine_patches'],
                      allow_failed_imports=False)
default_hooks = dict(
    checkpoint=dict(type='AtomicCheckpointHook', interval=1, max_keep_ckpts=3),
    # stop at the first NaN/inf loss or gradient (max_skips=N: skip N such steps first)
    nonfinite=dict(type='NonFiniteCheckHook'))
