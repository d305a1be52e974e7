# mmpretrain's runtime (hooks, logging, visualizer), keeping the newest checkpoints only.
# AtomicCheckpointHook (dat/engine) is mmengine's CheckpointHook with writes that a kill
# cannot break (registered by the configs' custom_imports of dat.adapters.*).
_base_ = ['mmpretrain::_base_/default_runtime.py']

default_hooks = dict(
    checkpoint=dict(type='AtomicCheckpointHook', interval=1, max_keep_ckpts=3))
