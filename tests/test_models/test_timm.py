"""The timm front door (dat/timm_models.py): ``timm.create_model('dat_tiny')`` after
``import dat``, its weights, features and eval transform against our mmpretrain models."""
from pathlib import Path

import pytest
import timm
import torch

import dat  # noqa: F401  (registers the timm models)
from dat.converters import convert_dat2022
from dat.converters.datpp import convert_datpp
from dat.models.checkpoint import CheckpointError

#: timm name -> (mmpretrain model name, release file, its name in the key lists of
#: tests/data/reference).
MODELS = {
    'dat_tiny': ('dat-tiny_8xb128-amp_in1k', 'dat_tiny_in1k_224.pth', 'dat_tiny'),
    'dat_small': ('dat-small_8xb128-amp_in1k', 'dat_small_in1k_224.pth', 'dat_small'),
    'dat_base': ('dat-base_8xb128-amp_in1k', 'dat_base_in1k_224.pth', 'dat_base'),
    'dat_base_384': ('dat-base_8xb24-amp_in1k-384px', 'dat_base_in1k_384.pth', 'dat_base_384'),
    'datpp_tiny': ('datpp-tiny_8xb128-amp_in1k', 'dat_pp_tiny_in1k_224.pth', 'dat_pp_tiny'),
    'datpp_small': ('datpp-small_8xb128-amp_in1k', 'dat_pp_small_in1k_224.pth', 'dat_pp_small'),
    'datpp_base': ('datpp-base_8xb64-amp_in1k', 'dat_pp_base_in1k_224.pth', 'dat_pp_base'),
    'datpp_base_384': ('datpp-base_8xb24-amp_in1k-384px', 'dat_pp_base_in1k_384.pth',
                       'dat_pp_base_384'),
}
CHANNELS = {'tiny': [96, 192, 384, 768], 'small': [96, 192, 384, 768],
            'base': [128, 256, 512, 1024], 'pp_tiny': [64, 128, 256, 512]}


def channels(name):
    size = name.split('_')[1]
    return CHANNELS['pp_tiny' if name == 'datpp_tiny' else size]


@pytest.fixture(scope='module')
def mmpretrain_hub():
    pytest.importorskip('mmpretrain')
    from mmpretrain import get_model

    import dat.adapters.mmpretrain  # noqa: F401  (the model names)
    return get_model


def test_registered_names():
    assert timm.list_models('dat*') == sorted(MODELS)
    for name, (_, release_file, _) in MODELS.items():
        cfg = timm.models.get_pretrained_cfg(name)
        assert f'release file: {release_file}' in cfg.notes
        assert cfg.origin_url.startswith('https://cloud.tsinghua.edu.cn/f/')
        assert cfg.crop_mode == 'squash' and cfg.interpolation == 'bicubic'
        assert cfg.input_size == ((3, 384, 384) if name.endswith('384') else (3, 224, 224))
        assert cfg.crop_pct == (1.0 if name == 'datpp_base_384' else 224 / 256)


@pytest.mark.parametrize('name', sorted(MODELS))
def test_pretrained_without_file_names_the_release(name):
    _, release_file, _ = MODELS[name]
    converter = 'dat2mmpretrain.py' if name.startswith('dat_') else 'datpp2mmpretrain.py'
    with pytest.raises(FileNotFoundError) as info:
        timm.create_model(name, pretrained=True)
    message = str(info.value)
    assert release_file in message and 'cloud.tsinghua.edu.cn/f/' in message
    assert f'python tools/model_converters/{converter} {release_file}' in message
    assert 'pretrained_cfg_overlay=dict(file=' in message


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(MODELS))
def test_each_size_equals_mmpretrain_model(name, mmpretrain_hub, tmp_path):
    """Every size, full width, on the CPU: the same (converted) weights give the same logits
    as our mmpretrain model, at the size of its eval transform; features_only (tiny models)
    gives the stage maps."""
    hub_name, _, _ = MODELS[name]
    torch.manual_seed(0)
    ours = mmpretrain_hub(hub_name)
    path = tmp_path / 'converted.pth'
    torch.save({'state_dict': ours.state_dict()}, path)
    model = timm.create_model(name, pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    size = model.pretrained_cfg['input_size'][1:]
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, expected = model(x), ours(x, mode='tensor')
    assert logits.shape == (1, 1000)
    print(f'{name}: max |timm - mmpretrain| logits = {(logits - expected).abs().max():.2e}')
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
    if not name.endswith('_tiny'):
        return  # features_only is the same code at every size: checked on the tiny models

    features = timm.create_model(name, features_only=True, pretrained=True,
                                 pretrained_cfg_overlay=dict(file=str(path))).eval()
    assert features.feature_info.channels() == channels(name)
    assert features.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        maps = features(x)
        final = model.forward_features(x)
    assert [tuple(m.shape) for m in maps] == [
        (1, c, size[0] // r, size[1] // r) for c, r in zip(channels(name), [4, 8, 16, 32])]
    # the last stage's map, through the classifier's final norm, is forward_features'
    normed = model.backbone.norm3(maps[-1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(normed, final, rtol=0, atol=1e-5)


def test_features_only_out_indices():
    model = timm.create_model('dat_tiny', features_only=True, out_indices=(1, -1)).eval()
    assert model.feature_info.channels() == [192, 768]
    assert model.feature_info.reduction() == [8, 32]
    with torch.no_grad():
        maps = model(torch.randn(2, 3, 160, 192))
    assert [tuple(m.shape) for m in maps] == [(2, 192, 20, 24), (2, 768, 5, 6)]
    # stages after the last index are dropped, as timm's feature getter does
    early = timm.create_model('datpp_tiny', features_only=True, out_indices=(0, 1))
    assert len(early.model.backbone.stages) == 2
    assert early.feature_info.channels() == [64, 128]


def test_other_num_classes_loads_the_backbone(tmp_path):
    torch.manual_seed(0)
    source = timm.create_model('dat_tiny').eval()
    path = tmp_path / 'converted.pth'
    torch.save({'state_dict': source.state_dict()}, path)
    model = timm.create_model('dat_tiny', pretrained=True, num_classes=10,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    assert model.get_classifier().out_features == 10
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), source.forward_features(x),
                                   rtol=0, atol=0)


def test_wrong_file_is_refused(tmp_path):
    torch.manual_seed(0)
    small = timm.create_model('dat_small')
    path = tmp_path / 'small.pth'
    torch.save({'state_dict': small.state_dict()}, path)
    with pytest.raises(CheckpointError, match='does not fit the timm model dat_tiny'):
        timm.create_model('dat_tiny', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    with pytest.raises(CheckpointError, match='no such checkpoint file'):
        timm.create_model('dat_tiny', pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(tmp_path / 'missing.pth')))


@pytest.fixture(scope='module')
def key_tables(reference_dir, key_lists):
    tables = {}
    for tsv in ('dat2022_checkpoint_keys.tsv', 'datpp_checkpoint_keys.tsv'):
        tables.update({name: keys for name, (_, keys) in key_lists(reference_dir / tsv).items()})
    return tables


@pytest.mark.slow
@pytest.mark.parametrize('name', ['dat_tiny', 'dat_base_384', 'datpp_tiny', 'datpp_base_384'])
def test_release_file_converted_on_load(name, key_tables, mmpretrain_hub, tmp_path):
    """A file in the release's layout (random tensors with its keys and shapes): timm
    converts it on load; its logits equal our mmpretrain model's with the converter's output."""
    hub_name, release_file, table = MODELS[name]
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.empty(shape).uniform_(-0.1, 0.1, generator=generator)
             for k, shape in key_tables[table].items()}
    path = tmp_path / release_file
    torch.save({'model': state}, path)
    model = timm.create_model(name, pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    converted, _ = (convert_dat2022 if name.startswith('dat_') else convert_datpp)(
        {'model': state})
    torch.save({'state_dict': converted}, tmp_path / 'converted.pth')
    ours = mmpretrain_hub(hub_name, pretrained=str(tmp_path / 'converted.pth'))
    x = torch.randn(1, 3, *model.pretrained_cfg['input_size'][1:], generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ours(x, mode='tensor'), rtol=0, atol=1e-5)


def sample_photos():
    """Real photos that matplotlib ships (a JPEG and a PNG)."""
    matplotlib = pytest.importorskip('matplotlib')
    folder = Path(matplotlib.get_data_path()) / 'sample_data'
    photos = [folder / 'grace_hopper.jpg', folder / 'Minduka_Present_Blue_Pack.png']
    if not all(p.is_file() for p in photos):
        pytest.skip(f'no sample photos in {folder}')
    return photos


@pytest.mark.parametrize('name', ['dat_tiny', 'dat_base_384', 'datpp_base_384'])
def test_eval_transform_is_our_test_pipeline(name, mmpretrain_hub, tmp_path):
    """timm's data config of the model (squash resize, bicubic, centre crop, ImageNet mean /
    std) gives the input of our mmpretrain test pipeline and data preprocessor, on real
    photos, also resized to other aspect ratios."""
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    from mmpretrain.apis import ModelHub
    from mmpretrain.registry import MODELS as MM_MODELS
    from PIL import Image

    config = ModelHub.get(MODELS[name][0]).config
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipeline = Compose(config.test_dataloader.dataset.pipeline)
    preprocessor = MM_MODELS.build(dict(type='ClsDataPreprocessor', **config.data_preprocessor))
    transform = timm.data.create_transform(
        **timm.data.resolve_data_config(model=timm.create_model(name)))
    images = []
    for photo in sample_photos():
        images.append(photo)
        for i, (w, h) in enumerate([(300, 500), (641, 233)]):  # portrait, wide
            resized = tmp_path / f'{photo.stem}_{i}.png'
            Image.open(photo).convert('RGB').resize((w, h), Image.BICUBIC).save(resized)
            images.append(resized)
    for image in images:
        ours = preprocessor(dict(inputs=[pipeline(dict(img_path=str(image)))['inputs']],
                                 data_samples=None))['inputs'][0]
        theirs = transform(Image.open(image).convert('RGB'))
        assert theirs.shape == ours.shape, image
        # the same input up to float rounding (measured: 4.8e-07 on both photos; OpenCV and
        # Pillow decode the JPEG to the same pixels here)
        torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5, msg=str(image))
