"""What every config shares, whatever its task: one adapter import, the backbone's no-decay
rule, heads as wide as the backbone's outputs, ``amp`` in the names of the mixed-precision
recipes, and leaves that state only what differs from their bases."""
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / 'configs').rglob('*.py')
                 if '_base_' not in p.parts)
ADAPTERS = {'mmpretrain': 'dat.adapters.mmpretrain', 'mmdet': 'dat.adapters.mmdet',
            'mmseg': 'dat.adapters.mmseg'}


@pytest.fixture(scope='module')
def configs():
    return {path: Config.fromfile(REPO / path) for path in CONFIGS}


def test_every_folder_is_found(configs):
    folders = {Path(path).parent.name for path in CONFIGS}
    assert folders == {'dat', 'datpp', 'retinanet', 'mask_rcnn', 'cascade_rcnn', 'upernet',
                       'sem_fpn'}
    assert len(CONFIGS) == 45


def test_one_adapter_import_per_task_and_no_stray_keys(configs):
    for path, cfg in configs.items():
        assert cfg.custom_imports == dict(
            imports=[ADAPTERS[cfg.default_scope], 'dat.apply_mmengine_patches'],
            allow_failed_imports=False), path
        assert 'backbone' not in cfg, path  # the backbone lives in model.backbone only
        assert cfg.model.backbone.type in ('DAT', 'DATPlusPlus'), path
        assert '_delete_' not in cfg.model.backbone, path


def test_leaves_state_only_what_differs():
    """The adapter import and the replacement of the library's backbone (``_delete_``) are
    decided once, in the bases."""
    for path in CONFIGS:
        text = (REPO / path).read_text()
        assert 'custom_imports' not in text and '_delete_' not in text, path


def test_amp_is_in_the_name_of_every_mixed_precision_recipe(configs):
    for path, cfg in configs.items():
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')  # mmengine's default
        assert wrapper in ('AmpOptimWrapper', 'OptimWrapper'), path
        assert (wrapper == 'AmpOptimWrapper') == bool(re.search(r'[_-]amp[_-]', Path(path).stem)), \
            path


def test_the_backbone_decides_which_tables_take_no_decay(configs):
    for path, cfg in configs.items():
        assert cfg.optim_wrapper.constructor == 'NoDecayKeywordsConstructor', path
        custom_keys = cfg.optim_wrapper.get('paramwise_cfg', {}).get('custom_keys', {})
        assert not any('table' in key for key in custom_keys), path


def test_necks_and_heads_take_the_backbones_channels(configs):
    from dat.families import build_backbone

    for path, cfg in configs.items():
        with torch.device('meta'):
            backbone = build_backbone(cfg.model.backbone)
        channels = backbone.num_features
        model = cfg.model
        if 'neck' in model and 'in_channels' in model.neck:
            assert model.neck.in_channels == channels, path
        elif model.type == 'ImageClassifier':
            assert model.head.in_channels == channels[-1], path
        else:  # UperNet
            assert model.decode_head.in_channels == channels, path
            assert model.auxiliary_head.in_channels == channels[model.auxiliary_head.in_index]


class Tables(torch.nn.Module):
    """A stand-in backbone with a norm, two position tables and another 3-d parameter."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(4)
        self.rpe_table = torch.nn.Parameter(torch.zeros(2, 3, 3))
        self.relative_position_bias_table = torch.nn.Parameter(torch.zeros(9, 2))
        self.rpb = torch.nn.Parameter(torch.zeros(2, 3, 3))
        self.fc = torch.nn.Linear(4, 4)

    def no_weight_decay_keywords(self):
        return ('relative_position_bias_table', 'rpe_table')


@pytest.mark.parametrize('custom_keys, table_decay',
                         [({}, 0.0), ({'rpe_table': dict(decay_mult=0.5)}, 0.05)])
def test_no_decay_keywords_constructor(custom_keys, table_decay):
    """The keywords come from the model; a custom key the config sets for one wins."""
    from mmengine.optim import build_optim_wrapper

    import dat.engine  # noqa: F401  (registers the constructor)
    model = torch.nn.Sequential(Tables(), torch.nn.Linear(4, 2))
    optim = build_optim_wrapper(model, dict(
        constructor='NoDecayKeywordsConstructor',
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.1),
        paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys=custom_keys)))
    decay = {id(p): g['weight_decay'] for g in optim.optimizer.param_groups for p in g['params']}
    named = dict(model.named_parameters())
    assert decay[id(named['0.rpe_table'])] == pytest.approx(table_decay)
    assert decay[id(named['0.relative_position_bias_table'])] == 0.0
    assert decay[id(named['0.norm.weight'])] == 0.0
    assert decay[id(named['0.rpb'])] == decay[id(named['0.fc.weight'])] == 0.1
    assert decay[id(named['1.weight'])] == 0.1
    assert len(decay) == len(named)
