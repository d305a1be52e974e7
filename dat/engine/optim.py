"""The optimizer's weight-decay rule for position tables, taken from the model.

DAT's and DAT++'s position tables take no weight decay: the window blocks'
``relative_position_bias_table`` and the deformable blocks' ``rpe_table``, as in the 2022
release (``skip_keywords`` of its optimizer.py) and the DAT++ one. The N blocks' ``rpb`` of
DAT++ is decayed, as the release does. The backbone names these tables in
:meth:`dat.models.DAT.no_weight_decay_keywords`; :class:`NoDecayKeywordsConstructor`
reads them from the model, so no config repeats them:

    optim_wrapper = dict(
        constructor='NoDecayKeywordsConstructor',
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
        paramwise_cfg=dict(norm_decay_mult=0.0))
"""
from typing import Dict, Set

import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS


def no_weight_decay_keywords(model: nn.Module) -> Set[str]:
    """The name fragments that the model's modules list in ``no_weight_decay_keywords()``."""
    return {keyword for module in model.modules()
            if callable(getattr(module, 'no_weight_decay_keywords', None))
            for keyword in module.no_weight_decay_keywords()}


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(force=True)
class NoDecayKeywordsConstructor(DefaultOptimWrapperConstructor):
    """mmengine's :class:`DefaultOptimWrapperConstructor`, and ``decay_mult=0`` for every
    parameter whose name contains one of the model's :func:`no_weight_decay_keywords`.

    The keywords become ``paramwise_cfg.custom_keys`` (a key that the config already sets
    keeps the config's value), so they work with the other ``paramwise_cfg`` rules as
    mmengine documents: a parameter that matches a custom key takes that key's multipliers
    and no norm, bias or flat rule.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        keywords = no_weight_decay_keywords(model)
        custom_keys: Dict = {keyword: dict(decay_mult=0.0) for keyword in sorted(keywords)}
        custom_keys.update(self.paramwise_cfg.get('custom_keys', {}))
        self.paramwise_cfg = dict(self.paramwise_cfg, custom_keys=custom_keys)
        wrapper = super().__call__(model)
        # mmengine hands the optimizer its parameter groups as ConfigDicts; torch.compile
        # cannot trace the optimizer's step over them (config `compile=True` compiles
        # mmengine's train_step, step included: "InternalTorchDynamoError: AttributeError:
        # 'UserDefinedDictVariable' object has no attribute 'items'" in AdamW.step, torch
        # 2.14). Plain dicts, same contents, same list.
        groups = wrapper.optimizer.param_groups
        groups[:] = [dict(group) for group in groups]
        return wrapper
