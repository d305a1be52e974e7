"""Register the backbone of every family (:mod:`dat.families`: ``DAT``, ``DATPlusPlus``) as
``mmdet`` backbones, and :class:`~dat.transforms.CheckedLoadImageFromFile` as a transform."""
from mmdet.registry import MODELS, TRANSFORMS

from dat.families import register_backbones
from dat.transforms import CheckedLoadImageFromFile

register_backbones(MODELS)
TRANSFORMS.register_module(module=CheckedLoadImageFromFile, force=True)
