# DAT-T++ UperNet on ADE20K: the authors' configs/dat/upn_tiny_160k_dp03_lr6.py
# (LeapLabTHU/DAT-Segmentation, mmseg 0.29), trained with mixed precision as there.
_base_ = '../_base_/seg/upernet_datpp.py'
model = dict(backbone=dict(drop_path_rate=0.3))
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
