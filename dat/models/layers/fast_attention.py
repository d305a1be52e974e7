"""Helpers of the ``'sdpa'`` kernels (``F.scaled_dot_product_attention``).

The layers call these when their kernel (:meth:`.common.AttentionImplMixin.kernel`) is
``'sdpa'``; the plain PyTorch code in the layers stays the reference, and
``tests/test_models/test_fast_path.py`` checks that both give the same numbers, forward and
backward. The position bias (plus the window mask) is SDPA's float ``attn_mask``, in the
attention's dtype and with its rows at a multiple of :data:`MASK_ALIGN` elements: the
memory-efficient CUDA kernel, the one that takes a mask that needs a gradient, would
otherwise pad and copy the mask in the forward and again in the backward. The attention
weights are not stored for the backward pass.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange

#: SDPA's memory-efficient kernel wants the mask's rows aligned to this many elements.
MASK_ALIGN = 16


def aligned_mask(mask: torch.Tensor) -> torch.Tensor:
    """The same values, with rows stored at a multiple of ``MASK_ALIGN`` elements."""
    n = mask.shape[-1]
    if n % MASK_ALIGN == 0:
        return mask
    return F.pad(mask, (0, MASK_ALIGN - n % MASK_ALIGN))[..., :n]


def aligned_empty(shape: Sequence[int], dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """An uninitialised tensor of ``shape`` whose rows are stored at a multiple of
    ``MASK_ALIGN`` elements (a view of a wider buffer), for a mask to be written into."""
    *lead, n = shape
    if torch.jit.is_tracing():  # the traced size stands for any size: no padding
        return torch.empty(shape, dtype=dtype, device=device)
    padded = (n + MASK_ALIGN - 1) // MASK_ALIGN * MASK_ALIGN
    return torch.empty((*lead, padded), dtype=dtype, device=device)[..., :n]


def needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd records an op on ``tensors`` here."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def window_sdpa(qkv: torch.Tensor, batch: int, num_heads: int, bias: torch.Tensor,
                mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Attention inside windows with SDPA.

    Args:
        qkv: (B * nW, N, 3 * C), the output of the ``qkv`` linear layer.
        bias: (heads, N, N) relative position bias.
        mask: (nW, N, N) additive window mask, or None.

    Returns:
        (B * nW, N, C), the heads concatenated (before ``proj``).
    """
    N = qkv.shape[1]
    nW = qkv.shape[0] // batch
    # Windows go into the head dimension, so one (1, nW * heads, N, N) mask broadcasts
    # over the batch instead of being copied per image.
    q, k, v = rearrange(qkv, '(b nw) n (three m d) -> three b (nw m) n d', b=batch, three=3,
                        m=num_heads).unbind(0)
    attn_mask = bias[None] if mask is None else bias[None] + mask[:, None]
    attn_mask = aligned_mask(attn_mask.expand(nW, num_heads, N, N)
                             .reshape(1, nW * num_heads, N, N).to(q.dtype))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    return rearrange(out, 'b (nw m) n d -> (b nw) n (m d)', m=num_heads)
