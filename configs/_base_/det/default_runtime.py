# mmdet's runtime (hooks, logging, visualizer), with DAT registered as an mmdet backbone.
_base_ = 'mmdet::_base_/default_runtime.py'

custom_imports = dict(imports=['dat.adapters.mmdet'], allow_failed_imports=False)
# mmengine's CheckpointHook with writes that a kill cannot break (dat/engine).
default_hooks = dict(
    checkpoint=dict(type='AtomicCheckpointHook'),
    # stop at the first NaN/inf loss or gradient (max_skips=N: skip N such steps first)
    nonfinite=dict(type='NonFiniteCheckHook'))
