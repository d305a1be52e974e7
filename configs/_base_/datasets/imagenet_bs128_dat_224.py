# ImageNet-1k at 224 px with the 2022 DAT (= Swin) augmentation: RandAugment
# rand-m9-mstd0.5-inc1, random erasing p=0.25 in pixel mode, bicubic resizing;
# test: resize the short side to 256 (= 224 / 0.875), centre crop 224.
_base_ = ['mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py']

train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader
