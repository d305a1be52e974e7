# mmpretrain's runtime (hooks, logging, visualizer), keeping the newest checkpoints only.
_base_ = ['mmpretrain::_base_/default_runtime.py']

default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
