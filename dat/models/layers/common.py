"""Small layers shared by the DAT blocks, and the choice of attention implementation."""
import contextlib
from typing import Iterator

import torch
import torch.nn as nn

#: ``'reference'``: plain PyTorch (matmul, softmax, matmul), the numbers of the 2022 code.
#: ``'fast'``: fused kernels (see :mod:`dat.models.layers.fast_attention`).
#: ``'auto'``: fast on CUDA, reference elsewhere.
ATTENTION_IMPLS = ('auto', 'reference', 'fast')
_attention_impl = 'auto'


def set_attention_impl(impl: str) -> str:
    """Choose how the attention layers compute; returns the previous choice.

    One process-wide setting, read at every forward, so it needs no config flag:

        >>> from dat.models.layers import set_attention_impl
        >>> previous = set_attention_impl('reference')  # e.g. to compare against 'fast'
    """
    global _attention_impl
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f'Unknown attention impl {impl!r}; choose one of {ATTENTION_IMPLS}')
    previous, _attention_impl = _attention_impl, impl
    return previous


def get_attention_impl() -> str:
    """The current choice: ``'auto'``, ``'reference'`` or ``'fast'``."""
    return _attention_impl


@contextlib.contextmanager
def attention_impl(impl: str) -> Iterator[None]:
    """``with attention_impl('fast'): ...`` sets the choice for a block of code."""
    previous = set_attention_impl(impl)
    try:
        yield
    finally:
        set_attention_impl(previous)


def use_fast_attention(x: torch.Tensor) -> bool:
    """Whether a layer that sees ``x`` takes its fast path under the current choice."""
    return _attention_impl == 'fast' or (_attention_impl == 'auto' and x.is_cuda)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout, on the last dimension.

    Parameter names: ``fc1``, ``fc2``.
    """

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
