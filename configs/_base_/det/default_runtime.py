# mmdet's runtime (hooks, logging, visualizer), with DAT registered as an mmdet backbone.
_base_ = 'mmdet::_base_/default_runtime.py'

# dat.apply_mmengine_patches: the libraries' own train/test tools then read checkpoints
# as ours do (mmengine 0.10.7's reader refuses its Runner's checkpoints under torch >= 2.6).
custom_imports = dict(imports=['dat.adapters.mmdet', 'dat.apply_mmengine_patches'],
                      allow_failed_imports=False)
# mmengine's CheckpointHook with writes that a kill cannot break (dat/engine).
default_hooks = dict(
    checkpoint=dict(type='AtomicCheckpointHook'),
    # stop at the first NaN/inf loss or gradient (max_skips=N: skip N such steps first)
    nonfinite=dict(type='NonFiniteCheckHook'))
