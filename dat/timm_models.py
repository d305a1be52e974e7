"""DAT and DAT++ in timm's model registry: ``timm.create_model('dat_tiny')`` after ``import dat``.

    >>> import dat, timm
    >>> timm.list_models('dat*')
    ['dat_base', 'dat_base_384', 'dat_small', 'dat_tiny', 'datpp_base', 'datpp_base_384',
     'datpp_small', 'datpp_tiny']
    >>> model = timm.create_model('dat_tiny', pretrained=True,
    ...                           pretrained_cfg_overlay=dict(file='dat_tiny_in1k_224.pth'))
    >>> features = timm.create_model('dat_tiny', features_only=True, out_indices=(1, 2, 3))
    >>> config = timm.data.resolve_data_config(model=model)   # the release's eval transform
    >>> transform = timm.data.create_transform(**config)

Each name is one classifier of the authors' releases, with its parameters named as our
mmpretrain ``ImageClassifier`` names them (``backbone.*``, ``head.fc.*``), so a converted
checkpoint and a release file both load. ``pretrained_cfg`` names the release file (its
``notes`` start with ``'release file: NAME'``) and where the authors publish it
(``origin_url``); we host no weights, so
``pretrained=True`` needs ``pretrained_cfg_overlay=dict(file=PATH)``: a release file is
converted on load by :mod:`dat.converters` (the converters' checks), then loaded strictly.
Without a file, ``pretrained=True`` raises an error that says where to get one.

The eval transform of ``pretrained_cfg`` is the release's: resize the whole image to
``input_size / crop_pct`` square (aspect ratio not kept: timm's ``crop_mode='squash'``),
bicubic, then centre-crop ``input_size`` (256 -> 224; 438 -> 384; DAT-B++ at 384: 384, no
crop), ImageNet mean and std.

``features_only=True`` gives timm's feature getter over :meth:`DATTimm.forward_intermediates`:
the stage outputs (strides 4, 8, 16, 32; ``out_indices`` default ``(0, 1, 2, 3)``, negative
indices count from the end), without the per-stage norms of the mmdet / mmseg backbones.
"""
from typing import Dict, List, Optional, Set, Tuple, Union

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead
from timm.models import (build_model_with_cfg, generate_default_cfgs, register_model,
                         resolve_pretrained_cfg)
from timm.models._features import feature_take_indices

from dat.converters.releases import RELEASES, read_release
from dat.families import FAMILIES, Family, TimmModel, for_each_family
from dat.models.backbones.dat import NUM_STAGES
from dat.models.checkpoint import load_weights


class DATTimm(nn.Module):
    """A classifier of a backbone family (DAT, DAT++) with timm's model interface.

    Args:
        family (str): A family of :data:`dat.families.FAMILIES` (``'DAT'``, ``'DAT++'``).
        arch (str | dict): The backbone's ``arch``.
        num_classes (int): Classes of the linear head; 0 for none. Default: 1000.
        in_chans (int): Input channels. Default: 3.
        global_pool (str): timm's pooling of the head. Default: ``'avg'``.
        drop_rate (float): Dropout before the head. Default: 0.
        drop_path_rate (float): Stochastic depth of the backbone. Default: 0.
        attn_impl (str): The backbone's ``attn_impl``. Default: ``'auto'``.
        **backbone_kwargs: Other arguments of the family's backbone, e.g. ``img_size``
            (sets the D blocks' position tables) and DAT's ``window_size``.
    """

    def __init__(self, family: str, arch: Union[str, Dict], num_classes: int = 1000,
                 in_chans: int = 3, global_pool: str = 'avg', drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, attn_impl: str = 'auto', **backbone_kwargs):
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f'family={family!r}: choose one of {list(FAMILIES)}')
        self.family = family
        self.backbone = FAMILIES[family].backbone(
            arch, in_channels=in_chans, drop_path_rate=drop_path_rate,
            out_indices=(NUM_STAGES - 1, ), attn_impl=attn_impl, **backbone_kwargs)
        dims = self.backbone.arch_settings['embed_dims']
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = dims[-1]
        self.feature_info = [dict(num_chs=dim, reduction=4 * 2 ** i, module=f'backbone.stages.{i}')
                             for i, dim in enumerate(dims)]
        self.head = ClassifierHead(dims[-1], num_classes, pool_type=global_pool,
                                   drop_rate=drop_rate)

    # timm's interface
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool)

    def no_weight_decay_keywords(self) -> Tuple[str, ...]:
        return self.backbone.no_weight_decay_keywords()

    def no_weight_decay(self) -> Set[str]:
        """What timm's optimizer factory (``timm.optim.create_optimizer_v2``) does not decay
        besides 1-d parameters: the backbone's :meth:`no_weight_decay_keywords`, as name
        patterns. The groups are then those of the configs' ``NoDecayKeywordsConstructor``."""
        return {f'*{keyword}*' for keyword in self.no_weight_decay_keywords()}

    def _final_norm(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        """The output norm of the last stage, (B, H, W, C) -> (B, C, H, W); a stage that
        :meth:`prune_intermediate_layers` left last has none."""
        norm = getattr(self.backbone, f'norm{stage}', None)
        return (x if norm is None else norm(x)).permute(0, 3, 1, 2).contiguous()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the last stage's normalised map (B, C', H / 32, W / 32)."""
        last = len(self.backbone.stages) - 1
        return self._final_norm(self.backbone.forward_stages(x, (last, ))[0], last)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor,
                              indices: Optional[Union[int, List[int]]] = None,
                              norm: bool = False, stop_early: bool = False,
                              output_fmt: str = 'NCHW', intermediates_only: bool = False):
        """Stage outputs (NCHW) of ``indices`` (timm's meaning: None for all, an int for
        the last n, negative indices from the end); ``norm`` applies the final norm to the
        last stage's. Returns them, or ``(final features, intermediates)``."""
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt={output_fmt!r}: only 'NCHW' is supported")
        last = len(self.backbone.stages) - 1
        take, max_index = feature_take_indices(last + 1, indices)
        keep = sorted(take)
        if not intermediates_only:
            if stop_early and max_index < last:
                raise ValueError('stop_early left out the last stage: no final features')
            keep = sorted(set(take) | {last})
        maps = dict(zip(keep, self.backbone.forward_stages(x, keep, stop_early)))
        intermediates = [self._final_norm(maps[i], i) if norm and i == last
                         else maps[i].permute(0, 3, 1, 2).contiguous() for i in take]
        if intermediates_only:
            return intermediates
        return self._final_norm(maps[last], last), intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1,
                                  prune_norm: bool = False, prune_head: bool = True) -> List[int]:
        """Drop the stages after the last of ``indices`` (and the final norm, the head);
        :meth:`forward_features` then gives the last kept stage's map."""
        take, max_index = feature_take_indices(len(self.backbone.stages), indices)
        self.backbone.stages = self.backbone.stages[:max_index + 1]
        last = f'norm{NUM_STAGES - 1}'
        if (prune_norm or max_index < NUM_STAGES - 1) and hasattr(self.backbone, last):
            delattr(self.backbone, last)
        if prune_head:
            self.reset_classifier(0, '')
        return take

    def load_pretrained(self, path: str):
        """timm's ``custom_load`` of ``pretrained_cfg['file']``: a release file (converted
        here, with the converter's checks) or a converted one, loaded strictly. With another
        ``num_classes`` than the file's, the backbone alone is loaded."""
        state, _ = read_release(path, self.family)
        what = f"timm model {self.pretrained_cfg.get('architecture')}"
        head = state.get('head.fc.weight')
        if head is not None and head.shape[0] != self.num_classes:
            load_weights(self.backbone, state, prefix='backbone.', what=f'{what} backbone',
                         logger=None)
        else:
            load_weights(self, state, what=what, logger=None)


def _cfg(model: TimmModel) -> Dict:
    release = RELEASES[model.release]
    size = model.input_size
    return dict(
        url='', file=None, custom_load=True, num_classes=1000,
        input_size=(3, size, size), pool_size=(size // 32, size // 32),
        crop_pct=model.crop_pct, crop_mode='squash', interpolation='bicubic',
        mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
        first_conv='backbone.patch_embed', classifier='head.fc', license='apache-2.0',
        origin_url=release.page, paper_ids=release.paper,
        notes=(f'release file: {model.release}', f'listed in {release.readme}',
               f'converted on load by {release.converter}\'s converter; pass the file with '
               "pretrained_cfg_overlay=dict(file=PATH)"))


def release_file(pretrained_cfg) -> str:
    """The release file that a model's ``pretrained_cfg`` names."""
    notes = pretrained_cfg.get('notes') if isinstance(pretrained_cfg, dict) else \
        getattr(pretrained_cfg, 'notes', None)
    return next(n.split(': ', 1)[1] for n in notes or () if n.startswith('release file: '))


def _create(variant: str, family: str, arch: str, pretrained: bool = False, **kwargs):
    overlay = dict(kwargs.pop('pretrained_cfg_overlay', None) or {})
    if pretrained:
        cfg = resolve_pretrained_cfg(variant, kwargs.get('pretrained_cfg'), dict(overlay))
        if not cfg.file:
            release = RELEASES[release_file(cfg)]
            raise FileNotFoundError(release.missing(f"timm.create_model('{variant}', "
                                                    'pretrained=True)'))
    # Files are read by DATTimm.load_pretrained (no code run from them, converted, strict),
    # not by timm's loader (timm >= 1.0.30 resets custom_load when a file is given).
    overlay['custom_load'] = True
    return build_model_with_cfg(
        DATTimm, variant, pretrained, pretrained_cfg_overlay=overlay, family=family, arch=arch,
        feature_cfg=dict(out_indices=tuple(range(NUM_STAGES)), feature_cls='getter'),
        **kwargs)


def _entrypoint(family: Family, model: TimmModel):
    """timm's model function of ``model``, named as the model."""
    def create(pretrained: bool = False, **kwargs) -> DATTimm:
        return _create(model.name, family.name, model.arch, pretrained,
                       **{**model.kwargs, **kwargs})
    create.__name__ = create.__qualname__ = model.name
    create.__module__ = __name__
    create.__doc__ = model.doc
    return create


__all__ = ['DATTimm', 'register_timm_models']  # and the model names, added by register_model
#: timm's pretrained configs of every family's models (``default_cfgs`` as timm's model
#: files name it; :func:`timm.models.register_model` reads it).
default_cfgs: Dict = {}


def register_timm_models(family: Family) -> None:
    """Register ``family``'s :attr:`~dat.families.Family.timm_models` with timm."""
    default_cfgs.update(generate_default_cfgs(
        {f'{model.name}.in1k': _cfg(model) for model in family.timm_models}))
    for model in family.timm_models:
        register_model(_entrypoint(family, model))


for_each_family(register_timm_models)
