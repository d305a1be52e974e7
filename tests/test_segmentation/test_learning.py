"""Learning happens: the scaled-down UperNet (the DAT-T recipe file with a mini DAT and
2 classes) fits a generated two-class task, bright rectangles on a dark textured
background, through the segmentor's own train_step and the recipe's optimizer settings
(AdamW with its no-decay rules; lr raised to 3e-3 and no warm-up for a short run)."""
import numpy as np
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

import dat.adapters.mmseg  # noqa: F401

ITERS = 30


def two_class_batch(rng, n=4, size=64):
    inputs, samples = [], []
    for _ in range(n):
        label = np.zeros((size, size), np.int64)
        y0, x0 = rng.integers(0, size // 2, 2)
        h, w = rng.integers(size // 4, size // 2, 2)
        label[y0:y0 + h, x0:x0 + w] = 1
        img = np.where(label[..., None] == 1, 200, 40) + rng.integers(-30, 30, (size, size, 3))
        inputs.append(torch.from_numpy(np.clip(img, 0, 255).astype(np.uint8)).permute(2, 0, 1))
        samples.append(SegDataSample(
            gt_sem_seg=PixelData(data=torch.from_numpy(label)[None]),
            metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                          pad_shape=(size, size))))
    return dict(inputs=inputs, data_samples=samples)


def test_loss_falls_on_two_classes(mini_config):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    register_all_modules()
    cfg = Config.fromfile(mini_config)
    cfg.model.decode_head.num_classes = 2
    cfg.model.auxiliary_head.num_classes = 2
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim_cfg = cfg.optim_wrapper.copy()
    optim_cfg.type = 'OptimWrapper'  # AMP needs CUDA
    optim_cfg.optimizer.lr = 3e-3
    optim_wrapper = build_optim_wrapper(model, optim_cfg)
    model.train()
    losses = []
    for _ in range(ITERS):
        log_vars = model.train_step(two_class_batch(rng), optim_wrapper)
        losses.append(log_vars['decode.loss_ce'].item())
    assert np.isfinite(losses).all()
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.5 * first, losses

    model.eval()
    data = model.data_preprocessor(two_class_batch(rng), False)
    with torch.no_grad():
        preds = model.predict(data['inputs'], data['data_samples'])
    accuracy = np.mean([(p.pred_sem_seg.data == p.gt_sem_seg.data).float().mean().item()
                        for p in preds])
    assert accuracy > 0.9, accuracy
