"""CheckedLoadImageFromFile: an image that cannot be read (empty, truncated, not an image)
stops with the file's name, in the pipelines of mmpretrain, mmdet and mmseg; or, with
``skip_unreadable=True``, the dataset skips it with a warning and a count."""
import importlib
import logging

import numpy as np
import pytest

cv2 = pytest.importorskip('cv2')
pytest.importorskip('mmcv.transforms')

from dat.engine import UnreadableImageError  # noqa: E402
from dat.transforms import CheckedLoadImageFromFile  # noqa: E402


@pytest.fixture
def images(tmp_path):
    """A good PNG, an empty file, a truncated PNG and a text file."""
    image = (np.arange(16 * 16 * 3) % 255).astype(np.uint8).reshape(16, 16, 3)
    good = tmp_path / 'good.png'
    cv2.imwrite(str(good), image)
    data = good.read_bytes()
    (tmp_path / 'empty.png').write_bytes(b'')
    (tmp_path / 'truncated.png').write_bytes(data[:len(data) // 3])
    (tmp_path / 'notes.jpg').write_text('not an image')
    return tmp_path, image


@pytest.mark.parametrize('name', ['empty.png', 'truncated.png', 'notes.jpg'])
@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_unreadable_image_error_names_the_file(images, name, backend):
    folder, _ = images
    load = CheckedLoadImageFromFile(imdecode_backend=backend)
    with pytest.raises(UnreadableImageError) as info:
        load(dict(img_path=str(folder / name)))
    message = str(info.value)
    assert message.startswith(f'{folder / name}: cannot be read as an image (')
    cause = message.split(' (', 1)[1].split('); ')[0]
    if name == 'empty.png':
        assert cause == 'empty file'
    else:  # the decoder's words, without cv2's source location or PIL's buffer id
        assert cause in ('the decoder returned no image', 'cannot identify image file',
                         'image file is truncated')
    assert message.endswith('; replace or remove the file, or skip such samples with '
                            "skip_unreadable=True in the pipeline's CheckedLoadImageFromFile")
    assert '\n' not in message


def test_good_image_loads_as_with_mmcv(images):
    folder, image = images
    out = CheckedLoadImageFromFile()(dict(img_path=str(folder / 'good.png')))
    np.testing.assert_array_equal(out['img'], image)
    assert out['img_shape'] == out['ori_shape'] == (16, 16)


def test_skip_unreadable_warns_and_counts(images):
    from mmengine.logging import MMLogger
    folder, _ = images
    load = CheckedLoadImageFromFile(skip_unreadable=True)
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = MMLogger.get_current_instance()  # where print_log(logger='current') writes
    logger.addHandler(handler)
    try:
        assert load(dict(img_path=str(folder / 'empty.png'))) is None
        assert load(dict(img_path=str(folder / 'good.png')))['img'].shape == (16, 16, 3)
        assert load(dict(img_path=str(folder / 'truncated.png'))) is None
    finally:
        logger.removeHandler(handler)
    assert load.skipped == 2
    warnings = [r.getMessage() for r in records]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in records)
    assert warnings[1].startswith(f'skipped {folder / "truncated.png"}: cannot be read as an '
                                  'image (')
    assert warnings[1].endswith('; 2 unreadable image(s) skipped so far by this data loading '
                                'process')


def test_ignore_empty_is_refused():
    with pytest.raises(ValueError, match='use skip_unreadable=True'):
        CheckedLoadImageFromFile(ignore_empty=True)


@pytest.mark.parametrize('library', ['mmpretrain', 'mmdet', 'mmseg'])
def test_registered_in_each_library_and_skipped_by_its_dataset(images, library):
    """Built by name from each library's registry (after ``dat.adapters.<library>``); in a
    training dataset a skipped sample is replaced by another one (mmengine's refetch)."""
    registry = pytest.importorskip(f'{library}.registry')
    importlib.import_module(f'dat.adapters.{library}')
    from mmengine.dataset import BaseDataset
    folder, _ = images
    load = registry.TRANSFORMS.build(dict(type='CheckedLoadImageFromFile'))
    assert type(load) is CheckedLoadImageFromFile
    with pytest.raises(UnreadableImageError, match='empty.png: cannot be read'):
        load(dict(img_path=str(folder / 'empty.png')))

    class Files(BaseDataset):
        def load_data_list(self):
            return [dict(img_path=str(folder / n)) for n in ('empty.png', 'good.png')]

    dataset = Files(pipeline=[registry.TRANSFORMS.build(
        dict(type='CheckedLoadImageFromFile', skip_unreadable=True))], serialize_data=False)
    assert dataset[0]['img_path'].endswith('good.png')
    assert dataset.pipeline.transforms[0].skipped >= 1


@pytest.mark.parametrize('config', [
    'configs/dat/dat-mini_1xb32_shapes.py',
    'configs/dat/dat-tiny_8xb128-amp_in1k.py',
    'configs/mask_rcnn/mask-rcnn_dat-tiny_fpn_amp-1x_coco.py',
    'configs/upernet/upernet_dat-tiny_8xb2-amp-160k_ade20k-512x512.py',
])
def test_tools_check_every_dataset_and_inferencers_find_the_loader(repo_root, config):
    """The test pipelines keep mmcv's ``LoadImageFromFile`` (the upstream inferencers find the
    loading step by that name and replace it); ``check_image_loading``, which our train and
    test tools apply, makes every dataset of the config load with CheckedLoadImageFromFile."""
    from mmengine.config import Config

    from dat.runner_utils import check_image_loading

    cfg = Config.fromfile(str(repo_root / config))
    assert cfg.test_dataloader.dataset.pipeline[0].type == 'LoadImageFromFile'
    assert cfg.train_dataloader.dataset.pipeline[0].type == 'CheckedLoadImageFromFile'
    check_image_loading(cfg)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loaders = [t for t in cfg[name].dataset.pipeline if 'Load' in t.type
                   and 'Annotation' not in t.type]
        assert [t.type for t in loaders] == ['CheckedLoadImageFromFile'], name
    assert check_image_loading(cfg).test_dataloader == cfg.test_dataloader  # idempotent


def test_check_image_loading_keeps_scope_and_arguments_in_wrapped_datasets():
    from mmengine.config import Config

    from dat.runner_utils import check_image_loading

    load = dict(type='mmdet.LoadImageFromFile', backend_args=None, to_float32=True)
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='ConcatDataset', datasets=[
            dict(type='RepeatDataset', dataset=dict(pipeline=[dict(load)])),
            dict(pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])]))))
    check_image_loading(cfg)
    first, second = cfg.train_dataloader.dataset.datasets
    assert first.dataset.pipeline[0] == dict(load, type='mmdet.CheckedLoadImageFromFile')
    assert [t.type for t in second.pipeline] == ['CheckedLoadImageFromFile', 'PackInputs']
