"""The ImageNet test transform of the configs against the 2022 release's, on photographs.

The 2022 release (LeapLabTHU/DAT, data/build.py) evaluates with torchvision on PIL images:
``Resize((R, R), BICUBIC)`` with ``R = int(256 / 224 * S)``, ``CenterCrop(S)``, ``ToTensor``,
``Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)``. The configs build the same from
mmpretrain's transforms (OpenCV decoding, Pillow resizing) and normalise in the model's
data preprocessor. On the photographs below the two agree to float32 rounding (mean about
5e-8): OpenCV and Pillow decode these JPEGs to the same pixels, the resize and the crop are
the same Pillow operations, and what is left is the order of the normalisation arithmetic
((x - 255 m) / (255 s) here, (x / 255 - m) / s in torchvision).
"""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ['dat-tiny_8xb128-amp_in1k', 'dat-small_8xb128-amp_in1k', 'dat-base_8xb128-amp_in1k',
           'dat-base_8xb24-amp_in1k-384px']
# Crops (left, upper, right, lower) of matplotlib's 512x600 sample photograph.
CROPS = {'wide': (0, 100, 512, 400), 'tall': (120, 0, 380, 600),
         'square': (0, 44, 512, 556), 'small': (100, 100, 300, 250)}


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """The photograph that matplotlib ships (a 512x600 JPEG), and JPEG files of several
    aspect ratios cut from it."""
    import matplotlib.cbook
    from PIL import Image
    original = Path(matplotlib.cbook.get_sample_data('grace_hopper.jpg', asfileobj=False))
    source = Image.open(original)
    root = tmp_path_factory.mktemp('photos')
    files = {'original': original}
    for name, box in CROPS.items():
        files[name] = root / f'{name}.jpg'
        source.convert('RGB').crop(box).save(files[name], quality=90)
    return files


def release_2022_transform(size: int, keep_ratio: bool = False):
    """The 2022 release's test transform (``keep_ratio=True``: a short-side resize, which
    the release does not do; used to show that the photographs tell the two apart)."""
    from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from torchvision import transforms
    resize = int(256 / 224 * size)
    return transforms.Compose([
        transforms.Resize(resize if keep_ratio else (resize, resize),
                          interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
    ])


def config_transform(cfg: Config):
    """The config's test pipeline and data preprocessor, built through the registries as
    the runner builds them: file path -> normalised (3, S, S) tensor."""
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import dat.adapters.mmpretrain  # noqa: F401
    init_default_scope('mmpretrain')
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    # as mmengine's Runner: the top-level data_preprocessor unless the model sets one
    settings = cfg.model.get('data_preprocessor', cfg.data_preprocessor)
    preprocessor = MODELS.build(dict(type='ClsDataPreprocessor', **settings)).eval()

    def transform(path: Path) -> torch.Tensor:
        packed = pipeline(dict(img_path=str(path)))
        batch = preprocessor(dict(inputs=[packed['inputs']],
                                  data_samples=[packed['data_samples']]))
        return batch['inputs'][0]

    return transform


@pytest.mark.parametrize('name', CONFIGS)
def test_test_pipeline_matches_the_2022_release_on_photographs(name, photos):
    from PIL import Image
    cfg = Config.fromfile(REPO / f'configs/dat/{name}.py')
    size = cfg.model.backbone.img_size
    ours = config_transform(cfg)
    release = release_2022_transform(size)
    short_side = release_2022_transform(size, keep_ratio=True)
    for photo, path in photos.items():
        with open(path, 'rb') as f:
            image = Image.open(f).convert('RGB')
        expected = release(image)
        got = ours(path)
        assert got.shape == expected.shape == (3, size, size), photo
        diff = (got - expected).abs()
        assert diff.mean() < 0.01, (photo, diff.mean())
        # what is left is float32 rounding (see the module docstring)
        assert diff.max() < 1e-5, (photo, diff.max())
        if photo != 'square':
            # the photographs do tell a short-side resize from the 2022 transform
            assert (short_side(image) - expected).abs().mean() > 0.1, photo
