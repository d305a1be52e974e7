"""The choice of attention implementation, and the bounded cache of per-size tensors.

Every attention layer takes ``attn_impl`` (one of :data:`ATTENTION_IMPLS`), checks it with
:func:`check_attention_impl` and, at each forward, asks :func:`resolve_attention_impl` which
kernel to run. A layer's own choice (from the backbone's config) wins; ``'auto'`` follows
the process-wide choice of :func:`set_attention_impl` (for tools and tests), whose own
``'auto'`` is ``'sdpa'`` on CUDA and ``'reference'`` elsewhere.
"""
import contextlib
import weakref
from collections import OrderedDict
from typing import Callable, Hashable, Iterator, Optional

import torch

#: ``'auto'``: the process-wide choice; by default ``'sdpa'`` on CUDA, ``'reference'``
#: elsewhere.
#: ``'reference'``: plain PyTorch (matmul, softmax, matmul), the numbers of the 2022 code.
#: ``'sdpa'``: ``F.scaled_dot_product_attention`` with the position bias (and masks)
#: materialised as its ``attn_mask``.
#: ``'flex'``: as ``'sdpa'``, except that deformable blocks with many keys use FlexAttention
#: with the position bias computed inside the kernel. Opt-in: not yet verified on a GPU
#: (see :mod:`dat.models.layers.fast_attention`).
ATTENTION_IMPLS = ('auto', 'reference', 'sdpa', 'flex')
_attention_impl = 'auto'


def check_attention_impl(impl: str) -> str:
    """Return ``impl`` if it is one of :data:`ATTENTION_IMPLS`, else raise a ValueError."""
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f'Unknown attention implementation attn_impl={impl!r}; choose one '
                         f'of {", ".join(map(repr, ATTENTION_IMPLS))}')
    return impl


def set_attention_impl(impl: str) -> str:
    """Set the process-wide choice; returns the previous one.

    It applies to the layers built with ``attn_impl='auto'`` (the default); a layer built
    with another value keeps its own:

        >>> from dat.models.layers import set_attention_impl
        >>> previous = set_attention_impl('reference')  # e.g. to compare against 'sdpa'
    """
    global _attention_impl
    previous, _attention_impl = _attention_impl, check_attention_impl(impl)
    return previous


def get_attention_impl() -> str:
    """The process-wide choice, one of :data:`ATTENTION_IMPLS`."""
    return _attention_impl


@contextlib.contextmanager
def attention_impl(impl: str) -> Iterator[None]:
    """``with attention_impl('sdpa'): ...`` sets the process-wide choice for a block of code."""
    previous = set_attention_impl(impl)
    try:
        yield
    finally:
        set_attention_impl(previous)


def resolve_attention_impl(impl: str, device: torch.device) -> str:
    """The kernel that a layer built with ``attn_impl=impl`` runs on ``device``:
    ``'reference'``, ``'sdpa'`` or ``'flex'``."""
    if impl == 'auto':
        impl = _attention_impl
    if impl == 'auto':
        impl = 'sdpa' if device.type == 'cuda' else 'reference'
    return impl


class SizeCache:
    """A small LRU cache of tensors that depend only on an input size (e.g. window masks),
    shared by every layer that asks for the same key.

    It holds at most ``max_entries`` entries, so its memory does not grow with the number of
    input sizes a run sees (multi-scale training sees a new size nearly every iteration).
    While ``torch.compile`` or the ONNX exporter traces, :meth:`get` builds the value in the
    graph instead.
    """

    _instances: 'weakref.WeakSet[SizeCache]' = weakref.WeakSet()

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: 'OrderedDict[Hashable, Optional[torch.Tensor]]' = OrderedDict()
        SizeCache._instances.add(self)

    @classmethod
    def total_nbytes(cls) -> int:
        """Bytes held by all the size caches of the process."""
        return sum(cache.nbytes() for cache in cls._instances)

    def get(self, key: Hashable,
            build: Callable[[], Optional[torch.Tensor]]) -> Optional[torch.Tensor]:
        """The value for ``key``, built by ``build()`` if it is not cached."""
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return build()
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = self._entries[key] = build()
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value

    def nbytes(self) -> int:
        """Bytes held by the cached tensors."""
        return sum(v.numel() * v.element_size() for v in self._entries.values()
                   if v is not None)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self):
        self._entries.clear()
