_base_ = '../_base_/seg/upernet_dat.py'
