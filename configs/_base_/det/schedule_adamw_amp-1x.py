# schedule_adamw_1x.py with mixed precision (fp16, dynamic loss scale), as the DAT recipe
# trains; tools/train.py turns it off on the CPU.
_base_ = './schedule_adamw_1x.py'

# AMP as the release trains (fp16 autocast, torch's GradScaler() with dynamic scaling:
# AmpOptimWrapper's default loss_scale). Nothing AMP-only is set, so on a CPU the upstream
# tools/train.py of mmpretrain, mmdet and mmseg run it in fp32 with
# `--cfg-options optim_wrapper.type=OptimWrapper` (ours switches by itself; docs/upstream_tools.md).
optim_wrapper = dict(type='AmpOptimWrapper')
