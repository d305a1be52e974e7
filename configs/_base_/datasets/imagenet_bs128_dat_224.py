# ImageNet-1k at 224 px with the 2022 DAT (= Swin) augmentation, built from mmpretrain's
# transforms (see configs/dat/README.md for where they differ from the 2022 timm code):
#   train: RandomResizedCrop 224 (bicubic, scale 0.08-1) -> horizontal flip (0.5)
#          -> RandAugment rand-m9-mstd0.5-inc1 -> RandomErasing p=0.25, pixel mode
#          (Mixup 0.8 / CutMix 1.0 and label smoothing 0.1 live in the model config);
#   test:  resize the whole image to 256x256 (bicubic; the aspect ratio is NOT kept)
#          -> centre crop 224.
# The test transform is the one of the 2022 release, LeapLabTHU/DAT data/build.py
# (`transforms.Resize((size, size), BICUBIC)` with size = int(256 / 224 * IMG_SIZE), then
# `CenterCrop(IMG_SIZE)`), in every version from the June 2022 commit that published the
# weights and their accuracies to the newest ones (main, September 2023, and the 2024
# branches); only the January 2022 code resized the short side. Checked against the
# repository history. Measured differences: configs/dat/README.md.
_base_ = ['mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py']

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 256), keep_ratio=False, backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

# mmpretrain's train pipeline, loading with CheckedLoadImageFromFile: an unreadable image is
# an error that names the file (docs/faults.md). Test pipelines keep mmcv's LoadImageFromFile,
# which the upstream inferencers look up by name; our tools/test.py and tools/train.py swap in
# CheckedLoadImageFromFile (dat.runner_utils.check_image_loading).
train_dataloader = dict(batch_size=128, dataset=dict(
    pipeline=[dict(type='CheckedLoadImageFromFile')] + _base_.train_pipeline[1:]))
val_dataloader = dict(batch_size=128, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
