# ImageNet-1k at 224 px with the 2022 DAT (= Swin) augmentation, built from mmpretrain's
# transforms (see configs/dat/README.md for where they differ from the 2022 timm code):
#   train: RandomResizedCrop 224 (bicubic, scale 0.08-1) -> horizontal flip (0.5)
#          -> RandAugment rand-m9-mstd0.5-inc1 -> RandomErasing p=0.25, pixel mode
#          (Mixup 0.8 / CutMix 1.0 and label smoothing 0.1 live in the model config);
#   test:  resize the short side to 256 (= 224 / 0.875, bicubic) -> centre crop 224.
_base_ = ['mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py']

train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader
