"""The segmentation configs' init_cfg (Pretrained, prefix 'backbone.') loads an ImageNet
checkpoint in the converter's layout into the segmentor's backbone, resizing position
tables made for another input size (DAT.init_weights)."""
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules

from dat.models import DAT

from seg_utils import MINI_ARCH


def test_backbone_loads_classification_checkpoint(tmp_path, mini_config, capfd):
    torch.manual_seed(0)
    # What tools/model_converters/dat2mmpretrain.py writes: backbone.* (with the last
    # stage's norm3 only) and head.fc.*; here for 32 px, so the D blocks' tables differ.
    source = DAT(MINI_ARCH, img_size=32, window_size=4)
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(10, 64)
    path = tmp_path / 'dat-mini_in1k.pth'
    torch.save({'state_dict': state, 'meta': {}}, path)

    register_all_modules()
    cfg = Config.fromfile(mini_config)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(path),
                                       prefix='backbone.')
    model = MODELS.build(cfg.model)
    # A fresh current logger at INFO, whose handler writes to the captured stdout.
    MMLogger.get_instance(f'test_pretrained_{id(model)}', log_level='INFO')
    model.init_weights()
    log = ''.join(capfd.readouterr())
    backbone = model.backbone
    torch.testing.assert_close(backbone.stages[2].blocks[1].attn.q.weight,
                               source.stages[2].blocks[1].attn.q.weight)
    torch.testing.assert_close(backbone.norm3.weight, source.norm3.weight)
    table = backbone.stages[2].blocks[1].attn.rpe_table
    assert table.shape[1:] == (7, 7) and source.stages[2].blocks[1].attn.rpe_table.shape[1:] \
        == (3, 3)  # 64 px: 4x4 map at stage 3 -> 7x7 table; 32 px: 2x2 -> 3x3
    assert 'resized stages.2.blocks.1.attn.rpe_table' in log
    assert 'norm0' in log  # the other output norms are reported as skipped
    # The decode head keeps its own initialisation.
    assert model.decode_head.conv_seg.weight.abs().sum() > 0
