"""dat.models.checkpoint: what is read, what is refused, and how weights are matched."""
import argparse
import os
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
from ckpt_helpers import ARCH, Payload, runs_code_when_unpickled, write_2022_checkpoint
from mmengine.logging import HistoryBuffer

from dat.models import DAT
from dat.models.checkpoint import (CheckpointError, Misshaped, check_fit, load_weights,
                                   read_checkpoint, read_state_dict, strip_prefix)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / 'MARKER'
    yield path
    assert not path.exists(), 'code from a checkpoint ran'


def test_runner_records_load(tmp_path):
    """What mmengine Runner checkpoints hold besides tensors: HistoryBuffer (with its
    statistics methods, pickled as getattr(HistoryBuffer, name)), numpy arrays, scalars and
    dtypes, an argparse Namespace."""
    buffer = HistoryBuffer()
    for value in (3.0, 2.0, 1.0):
        buffer.update(value)
    saved = {'message_hub': {'log_scalars': {'train/loss': buffer},
                             'runtime_info': {'best': np.float64(0.5), 'iter': np.int64(7)}},
             'meta': {'mask': np.array([[1, 2], [3, 4]], np.uint8), 'dtype': np.dtype('f4'),
                      'labels': np.array(['a', 'b']), 'flag': np.bool_(True),
                      'args': argparse.Namespace(lr=0.1)},
             'state_dict': {'w': torch.arange(4.0)}}
    torch.save(saved, tmp_path / 'runner.pth')
    got = read_checkpoint(tmp_path / 'runner.pth')
    loaded = got['message_hub']['log_scalars']['train/loss']
    assert isinstance(loaded, HistoryBuffer) and loaded.mean() == 2.0 and loaded.min() == 1.0
    assert got['message_hub']['runtime_info'] == {'best': 0.5, 'iter': 7}
    np.testing.assert_array_equal(got['meta']['mask'], [[1, 2], [3, 4]])
    assert got['meta']['dtype'] == np.float32 and list(got['meta']['labels']) == ['a', 'b']
    assert got['meta']['args'].lr == 0.1
    assert torch.equal(got['state_dict']['w'], torch.arange(4.0))


@pytest.mark.parametrize('hostile, named', [
    (lambda m: Payload(m), 'posix.system'),
    # inside a numpy object array: the array's items are unpickled by the same rules
    (lambda m: np.array([Payload(m)], dtype=object), 'posix.system'),
    # a getattr that is not one of HistoryBuffer's statistics methods
    (lambda m: GetattrPayload(m), 'refused'),
])
def test_hostile_pickles_are_refused_and_run_nothing(tmp_path, marker, hostile, named):
    path = tmp_path / 'hostile.pth'
    torch.save({'state_dict': {'w': torch.zeros(2)}, 'meta': {'x': hostile(marker)}}, path)
    if named == 'posix.system':
        assert runs_code_when_unpickled(path, marker)  # the file really is hostile
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f'{path}: refused: ') and named in message
    assert "weights_only=False" in message  # how to convert a trusted file
    assert '\n' not in message


class GetattrPayload:
    """getattr(HistoryBuffer, '__init__') would reach code, not a statistics method."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


def test_2022_objects_are_read_as_inert_data(tmp_path, marker, reference_dir):
    """A yacs CfgNode of the 2022 code (its module is gone) and an argparse Namespace."""
    state = torch.load(reference_dir / 'golden_mini_dat2022.pth', weights_only=True)['model']
    path = tmp_path / 'ckpt_epoch_299.pth'
    write_2022_checkpoint(path, state, tmp_path, marker)
    with pytest.raises(ImportError):
        import yacs.config  # noqa: F401  (so a full unpickling would need code from elsewhere)
    assert runs_code_when_unpickled(path, marker) is False  # it fails: no yacs module

    checkpoint = read_checkpoint(path)
    config = checkpoint['config']
    assert type(config) is OrderedDict and config['MODEL']['NAME'] == 'dat_tiny'
    assert config.__dict__ == {'__immutable__': False}
    assert checkpoint['args'].cfg == 'configs/dat_tiny.yaml'
    weights, extras = read_state_dict(path)
    assert weights.keys() == state.keys() and extras['epoch'] == 299
    assert all(torch.equal(weights[k], v) for k, v in state.items())


@pytest.mark.parametrize('damage, reason', [
    (lambda data: os.urandom(4096), 'it is not a PyTorch checkpoint'),
    (lambda data: data[:len(data) // 2], 'it is truncated or damaged'),
    (lambda data: b'', 'it is not a PyTorch checkpoint'),
])
def test_unreadable_files_are_named(tmp_path, damage, reason):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.randn(1000)}}, good)
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(damage(good.read_bytes()))
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(bad)
    assert str(error.value).startswith(f'{bad}: cannot be read as a checkpoint: {reason}')
    with pytest.raises(FileNotFoundError, match=re.escape(f'{tmp_path}/none.pth: no such')):
        read_checkpoint(tmp_path / 'none.pth')


def test_strip_prefix():
    state = {'backbone.a': 1, 'backbone.b': 2, 'head.c': 3}
    assert strip_prefix(state, 'backbone.') == {'a': 1, 'b': 2}
    assert strip_prefix({'a': 1}, 'backbone.') == {'a': 1}  # a bare backbone checkpoint
    assert strip_prefix({'module.backbone.a': 1}, 'backbone.') == {'a': 1}  # DDP-saved


def small_dat(**kwargs):
    torch.manual_seed(0)
    return DAT(ARCH, img_size=64, window_size=[4, 4, 4, 2], **kwargs)


def test_load_weights_is_strict_and_names_the_first_keys(tmp_path):
    source = small_dat()
    path = tmp_path / 'dat.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()}},
               path)
    deeper = DAT(dict(ARCH, depths=[1, 1, 4, 2], block_types=['L', 'S', 'LDLD', 'LD']),
                 img_size=64, window_size=[4, 4, 4, 2])
    before = deeper.patch_embed.proj.weight.clone()
    with pytest.raises(CheckpointError) as error:
        load_weights(deeper, path, prefix='backbone.')
    message = str(error.value)
    assert message.startswith(f"{path} (prefix 'backbone.') does not fit the DAT: ")
    assert ('missing from the checkpoint (first: stages.2.blocks.2.norm1.weight, '
            'stages.2.blocks.2.norm1.bias') in message
    assert torch.equal(deeper.patch_embed.proj.weight, before)  # nothing half-loaded

    # asked for explicitly: the keys that fit are loaded
    report = load_weights(deeper, path, prefix='backbone.', strict=False)
    assert report.loaded == len(source.state_dict())
    assert torch.equal(deeper.patch_embed.proj.weight, source.patch_embed.proj.weight)


def test_output_norms_are_optional_only_when_initialising(tmp_path):
    """A classifier's checkpoint (norm3 only) initialises a 4-output backbone (pretrained),
    but is not the weights of one (inference, export)."""
    source = small_dat()
    path = tmp_path / 'cls.pth'
    torch.save({'state_dict': source.state_dict()}, path)
    dense = small_dat(out_indices=(0, 1, 2, 3))
    with pytest.raises(CheckpointError, match=r'6 missing from the checkpoint \(first: '
                                              r'norm0.weight, norm0.bias, norm1.weight'):
        load_weights(dense, path)
    report = load_weights(dense, path, pretrained=True)
    assert report.fit.missing == [f'norm{i}.{p}' for i in range(3) for p in ('weight', 'bias')]
    assert torch.equal(dense.norm3.weight, source.norm3.weight)


def test_tables_of_another_size_are_resized_by_the_layers(tmp_path):
    source = small_dat()
    bigger = DAT(ARCH, img_size=96, window_size=[6, 6, 6, 3])
    report = load_weights(bigger, source.state_dict())
    assert report.fit.wrong_shape == [] and report.loaded == len(source.state_dict())
    assert bigger.stages[2].blocks[1].attn.rpe_table.shape[1:] == (11, 11)


def test_load_state_dict_keeps_torchs_contract():
    """nn.Module.load_state_dict as PyTorch documents it: strict=False loads what fits and
    returns the rest, strict=True raises torch's RuntimeError."""
    model = small_dat()
    before = model.patch_embed.proj.weight.clone()
    result = model.load_state_dict({}, strict=False)
    assert result.missing_keys == list(model.state_dict()) and result.unexpected_keys == []
    assert torch.equal(model.patch_embed.proj.weight, before)
    with pytest.raises(RuntimeError, match='Missing key'):
        model.load_state_dict({})
    partial = {'patch_embed.proj.weight': torch.zeros_like(before), 'extra': torch.ones(1)}
    result = model.load_state_dict(partial, strict=False)
    assert result.unexpected_keys == ['extra'] and 'patch_embed.proj.weight' not in \
        result.missing_keys
    assert not model.patch_embed.proj.weight.any()
    assert not isinstance(RuntimeError('x'), CheckpointError)  # torch's error, not ours


def test_load_state_dict_resizes_tables_of_another_size():
    """The layers' own load hooks adapt position tables, under torch's load_state_dict."""
    source = small_dat()
    bigger = DAT(ARCH, img_size=96, window_size=[6, 6, 6, 3])
    assert bigger.load_state_dict(source.state_dict()).missing_keys == []
    table = bigger.stages[2].blocks[1].attn.rpe_table
    assert table.shape[1:] == (11, 11)
    # the resized table is the source's, interpolated: corners agree exactly
    assert torch.equal(table[:, 0, 0], source.stages[2].blocks[1].attn.rpe_table[:, 0, 0])


def test_our_loaders_refuse_a_misfit_that_mmengines_loader_logs(tmp_path):
    """mmengine's load_checkpoint (strict=False) loads what fits and logs the rest;
    check_fit (with backbones_only: tools/train.py's load_from,
    dat.adapters.mmpretrain.get_model; of the whole model: tools/test.py, load_weights)
    refuses the file with the one-line summary; Fit holds the keys and shapes."""
    from mmengine.runner import load_checkpoint

    source = small_dat()
    path = tmp_path / 'dat.pth'
    torch.save({'state_dict': source.state_dict()}, path)
    wider = DAT(dict(ARCH, embed_dims=[16, 32, 64, 128]), img_size=64,
                window_size=[4, 4, 4, 2])
    summary = (r'the weights do not fit the DAT backbone \(embed_dims=\[16, 32, 64, 128\].*'
               r'mis-shaped, checkpoint vs model \(first: stages.3.downsample.proj.weight '
               r'\(64, 64, 2, 2\) vs \(128, 64, 2, 2\)')
    with pytest.raises(CheckpointError, match=summary):
        check_fit(wider, path, backbones_only=True)
    with pytest.raises(CheckpointError, match=summary.replace('first: ', 'first: 0.')):
        check_fit(torch.nn.Sequential(wider), {'state_dict': {
            f'0.{k}': v for k, v in source.state_dict().items()}}, backbones_only=True)
    with pytest.raises(CheckpointError, match=f'{re.escape(str(path))} does not fit the DAT: '
                       '38 mis-shaped'):
        load_weights(wider, path)
    fit = load_weights(wider, path, strict=False, logger=None).fit
    assert len(fit.wrong_shape) == 38 and not fit.missing and not fit.unexpected
    assert fit.wrong_shape[0] == Misshaped('stages.3.downsample.proj.weight', (64, 64, 2, 2),
                                           (128, 64, 2, 2))
    load_checkpoint(wider, str(path), map_location='cpu')
    assert torch.equal(wider.patch_embed.proj.weight, source.patch_embed.proj.weight)
    state, fit = check_fit(small_dat(), path)  # a file that fits passes
    assert fit.problems() == [] and sorted(state) == sorted(source.state_dict())
