"""Build a model from any DAT config, whichever OpenMMLab library its ``default_scope``
names, for tools that run the network outside mmengine's Runner (FLOPs, benchmarks)."""
import torch.nn as nn
from mmengine.config import Config

SCOPES = ('mmpretrain', 'mmdet', 'mmseg')


def build_model_from_config(cfg: Config) -> nn.Module:
    """Build ``cfg.model`` in the registry of ``cfg.default_scope`` (mmpretrain by default),
    after the config's ``custom_imports``."""
    scope = cfg.get('default_scope', 'mmpretrain')
    if scope not in SCOPES:
        raise ValueError(f'default_scope {scope!r} is not one of {SCOPES}')
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS'])
    __import__(f'{scope}.utils', fromlist=['register_all_modules']).register_all_modules()
    return registry.MODELS.build(cfg.model)


class TensorMode(nn.Module):
    """Calls ``model(x, mode='tensor')``: the network alone, without pre/post-processing."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x, mode='tensor')
