"""Build the DAT backbone of a config and load a checkpoint into a model, strictly.

Used by the tools that run a backbone outside mmengine's Runner (visualisation, ONNX
export). Errors are ``ValueError`` / ``FileNotFoundError`` with a message that names the
problem; the tools print them.
"""
import os.path as osp
from typing import Mapping, Optional

import torch
import torch.nn as nn

from .backbones import DAT


def build_dat_backbone(backbone_cfg: Mapping) -> DAT:
    """A :class:`DAT` from a config's ``model.backbone``, without its ``init_cfg`` (so that
    nothing is loaded from the config's pretrained path)."""
    kwargs = dict(backbone_cfg)
    kind = str(kwargs.pop('type', ''))
    if kind.split('.')[-1] != 'DAT':
        raise ValueError(f'the backbone type is {kind!r}, not DAT')
    kwargs.pop('init_cfg', None)
    kwargs.pop('_delete_', None)
    return DAT(**kwargs)


def load_checkpoint_strictly(model: nn.Module, checkpoint: str, what: str,
                             prefix: Optional[str] = None) -> None:
    """Load ``checkpoint`` into ``model``: every key and shape must match.

    ``prefix`` (e.g. ``'backbone.'``) is stripped from the checkpoint's keys when some of
    them carry it. ``what`` names the model in error messages.
    """
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'no such checkpoint: {checkpoint}')
    # Runner checkpoints hold mmengine / numpy objects: not weights_only. Trusted files only.
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)
    state = state.get('state_dict', state)
    if prefix and any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f'{checkpoint} does not fit the {what}: {err}') from err
    if missing or unexpected:
        raise ValueError(
            f'{checkpoint} does not fit the {what}: {len(missing)} missing keys '
            f'(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]})')
