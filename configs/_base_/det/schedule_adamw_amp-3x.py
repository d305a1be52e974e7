# schedule_adamw_3x.py with mixed precision (fp16, dynamic loss scale), as the DAT recipe
# trains; tools/train.py turns it off on the CPU.
_base_ = './schedule_adamw_3x.py'

optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
