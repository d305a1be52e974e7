_base_ = '../_base_/seg/fpn_dat.py'
