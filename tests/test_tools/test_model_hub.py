"""The DAT classification models in mmpretrain's model hub (``import dat.adapters.mmpretrain``)."""
import numpy as np
import pytest
import torch
import yaml

import dat.adapters.mmpretrain  # noqa: F401  (registers the model index)

NAMES = ['dat-base_8xb128-amp_in1k', 'dat-base_8xb24-amp_in1k-384px',
         'dat-small_8xb128-amp_in1k', 'dat-tiny_8xb128-amp_in1k']
DATPP_NAMES = ['datpp-base_8xb24-amp_in1k-384px', 'datpp-base_8xb64-amp_in1k',
               'datpp-small_8xb128-amp_in1k', 'datpp-tiny_8xb128-amp_in1k']


@pytest.fixture(scope='module')
def metafile(repo_root):
    return {m['Name']: m for folder in ('dat', 'datpp') for m in yaml.safe_load(
        (repo_root / f'configs/{folder}/metafile.yml').read_text())['Models']}


def test_list_models(repo_root):
    import mmpretrain
    assert mmpretrain.list_models('dat-*') == NAMES
    assert mmpretrain.list_models('dat-*', task='Image Classification') == NAMES
    assert mmpretrain.list_models('datpp*') == DATPP_NAMES
    # The root model index lists the classification metafile (and those of other tasks).
    index = yaml.safe_load((repo_root / 'model-index.yml').read_text())
    assert {'configs/dat/metafile.yml', 'configs/datpp/metafile.yml'} <= set(index['Import'])
    assert all((repo_root / path).is_file() for path in index['Import'])
    from modelindex.load_model_index import load
    models = load(str(repo_root / 'model-index.yml'))
    models.build_models_with_collections()
    assert set(NAMES + DATPP_NAMES) <= {m.name for m in models.models}
    assert all((repo_root / m.config).is_file() for m in models.models)


def test_registration_is_idempotent():
    import mmpretrain
    dat.adapters.mmpretrain.register_model_index()
    assert mmpretrain.list_models('dat*') == NAMES + DATPP_NAMES


@pytest.mark.parametrize('name', NAMES + DATPP_NAMES)
def test_get_model_builds(name, metafile):
    from mmpretrain import get_model
    with torch.device('meta'):
        model = get_model(name)
    assert type(model.backbone).__name__ == ('DATPlusPlus' if 'datpp' in name else 'DAT')
    params = sum(p.numel() for p in model.parameters())
    assert params == metafile[name]['Metadata']['Parameters']
    assert model._metainfo.name == name


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
    """A DAT-T checkpoint whose head prefers class 207 (golden retriever)."""
    from mmpretrain import get_model
    torch.manual_seed(1)
    model = get_model('dat-tiny_8xb128-amp_in1k')
    state = model.state_dict()
    state['head.fc.bias'] = torch.zeros(1000).index_fill_(0, torch.tensor([207]), 50.0)
    path = tmp_path_factory.mktemp('hub') / 'dat-tiny.pth'
    torch.save({'state_dict': state, 'meta': {}}, path)
    return path, state


@pytest.fixture
def no_download(monkeypatch):
    import mmengine.runner.checkpoint as ckpt

    def refuse(*args, **kwargs):
        raise AssertionError('tried to download a checkpoint')

    monkeypatch.setattr(ckpt, 'load_from_http', refuse)
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', refuse)


def test_get_model_pretrained_path(tiny_checkpoint, no_download):
    from mmpretrain import get_model
    path, state = tiny_checkpoint
    model = get_model('dat-tiny_8xb128-amp_in1k', pretrained=str(path))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_inferencer_by_name(tiny_checkpoint, no_download, tmp_path):
    import cv2
    from mmpretrain import ImageClassificationInferencer
    path, _ = tiny_checkpoint
    img = tmp_path / 'img.jpg'
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (200, 260, 3), np.uint8))
    inferencer = ImageClassificationInferencer('dat-tiny_8xb128-amp_in1k', pretrained=str(path))
    (result, ) = inferencer(str(img))
    assert result['pred_label'] == 207
    assert result['pred_class'] == 'golden retriever'
    assert result['pred_score'] > 0.99


def test_missing_checkpoint_path(tmp_path, no_download):
    from mmpretrain import get_model
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        get_model('dat-tiny_8xb128-amp_in1k', pretrained=str(tmp_path / 'missing.pth'))


def test_unknown_name():
    from mmpretrain import get_model
    with pytest.raises(ValueError, match='Failed to find model "dat-huge"'):
        get_model('dat-huge')


@pytest.mark.parametrize('name,release_file,converter', [
    ('dat-tiny_8xb128-amp_in1k', 'dat_tiny_in1k_224.pth', 'dat2mmpretrain.py'),
    ('dat-base_8xb24-amp_in1k-384px', 'dat_base_in1k_384.pth', 'dat2mmpretrain.py'),
    ('datpp-tiny_8xb128-amp_in1k', 'dat_pp_tiny_in1k_224.pth', 'datpp2mmpretrain.py'),
    ('datpp-base_8xb24-amp_in1k-384px', 'dat_pp_base_in1k_384.pth', 'datpp2mmpretrain.py'),
])
def test_pretrained_true_names_the_release_file(name, release_file, converter, no_download):
    """We host no weights: pretrained=True is an error that says which release file, where
    the authors publish it and how to convert it; never a model with random weights."""
    from mmpretrain import get_model
    with pytest.raises(FileNotFoundError) as info:
        get_model(name, pretrained=True)
    message = str(info.value)
    assert f'release file {release_file}' in message
    assert 'https://cloud.tsinghua.edu.cn/f/' in message
    assert f'python tools/model_converters/{converter} {release_file}' in message


def test_every_classification_model_names_its_release(metafile):
    from dat.converters.releases import RELEASES, SCHEME
    files = [m['Weights'] for m in metafile.values()]
    assert all(w.startswith(SCHEME) for w in files)
    assert sorted(w[len(SCHEME):] for w in files) == sorted(RELEASES)
    for model in metafile.values():  # DAT++: the download page the metafile already names
        page = model['Converted From']['Weights']
        if page.startswith('https://'):
            assert RELEASES[model['Weights'][len(SCHEME):]].page == page
