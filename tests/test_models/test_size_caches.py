"""What the backbone caches per input size stays bounded over many sizes (multi-scale
training), and is shared by the layers that can share it."""
import random

import pytest
import torch

from dat.models import DAT
from dat.models.layers import SizeCache, WindowAttention, window_attention


def tensors_in(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            yield from tensors_in(item)


def cached_bytes(model) -> int:
    """Bytes of the tensors kept between forwards besides parameters and buffers: in every
    SizeCache of the process, and in any attribute of the model's modules."""
    total = SizeCache.total_nbytes()
    for module in model.modules():
        for name, value in vars(module).items():
            if name not in ('_parameters', '_buffers', '_modules'):
                total += sum(t.numel() * t.element_size() for t in tensors_in(value))
    return total


def train_step(model, size):
    outs = model(torch.randn(1, 3, *size))
    sum(out.mean() for out in outs).backward()
    model.zero_grad(set_to_none=True)


@pytest.mark.slow
def test_cache_bytes_do_not_grow_over_30_sizes():
    """DAT-T in train mode, forward and backward at 30 sizes that are multiples of 32 (as
    after the Mask R-CNN pipeline's padding): the caches hold no more after 30 sizes than
    after 3. The last three sizes are the first three transposed (distinct sizes whose
    masks have the same number of bytes), so a bounded cache holds the same bytes after
    both; a cache that keeps every size would hold about ten times as much."""
    torch.manual_seed(0)
    model = DAT('tiny', out_indices=(0, 1, 2, 3), drop_path_rate=0.2).train()
    sides = range(64, 257, 32)
    pairs = sorted(((h, w) for h in sides for w in sides if h < w),
                   key=lambda p: (p[0] * p[1], p))[:15]
    middle = pairs[3:] + [(w, h) for h, w in pairs[3:]]
    random.Random(0).shuffle(middle)
    sizes = pairs[:3] + middle + [(w, h) for h, w in pairs[:3]]
    assert len(set(sizes)) == 30

    for size in sizes[:3]:
        train_step(model, size)
    after_3 = cached_bytes(model)
    for size in sizes[3:]:
        train_step(model, size)
    after_30 = cached_bytes(model)
    print(f'\ncached bytes after 3 sizes: {after_3}, after 30 sizes: {after_30}')
    assert 0 < after_3 and after_30 <= after_3
    cache = model.size_caches['window_masks']
    assert 0 < len(cache) <= window_attention.MASK_CACHE_ENTRIES


class CountingCache(SizeCache):
    """A SizeCache that records the keys it builds a value for."""

    def __init__(self, max_entries: int):
        super().__init__(max_entries)
        self.built = []

    def get(self, key, build):
        return super().get(key, lambda: self.built.append(key[:4]) or build())


def test_window_masks_are_shared_and_reused():
    """One forward builds each distinct mask once (the three L blocks of stage 3 share
    theirs); a second forward at the same size builds none. The backbone's window layers
    share one cache, their ``mask_cache``."""
    model = DAT('tiny', out_indices=(0, 1, 2, 3)).eval()
    layers = [m for m in model.modules() if isinstance(m, WindowAttention)]
    assert len(layers) == 8 and all(m.mask_cache is model.size_caches['window_masks']
                                    for m in layers)
    counting = CountingCache(window_attention.MASK_CACHE_ENTRIES)
    for layer in layers:
        layer.mask_cache = counting
    with torch.no_grad():
        model(torch.randn(1, 3, 96, 128))
        # (window, shift, height, width): stages 1-2: L and S; stages 3-4: L
        assert sorted(counting.built) == sorted([(7, 0, 24, 32), (7, 4, 24, 32), (7, 0, 12, 16),
                                                 (7, 4, 12, 16), (7, 0, 6, 8), (7, 0, 3, 4)])
        model(torch.randn(2, 3, 96, 128))
    assert len(counting.built) == 6


def test_two_models_keep_their_own_masks():
    """Caches belong to the model: a second model neither reads nor fills the first's."""
    first, second = DAT('tiny').eval(), DAT('tiny').eval()
    with torch.no_grad():
        first(torch.randn(1, 3, 96, 128))
    assert len(first.size_caches['window_masks']) == 6
    assert len(second.size_caches['window_masks']) == 0
