"""Helpers of the ``'sdpa'`` kernels (``F.scaled_dot_product_attention``).

The layers call these when their kernel (:meth:`.common.AttentionImplMixin.kernel`) is
``'sdpa'``; the plain PyTorch code in the layers stays the reference, and
``tests/test_models/test_fast_path.py`` checks that both give the same numbers, forward and
backward. The position bias (plus the window mask) is SDPA's float ``attn_mask``, in the
attention's dtype and with its rows at a multiple of :data:`MASK_ALIGN` elements: the
memory-efficient CUDA kernel, the one that takes a mask that needs a gradient, would
otherwise pad and copy the mask in the forward and again in the backward. The attention
weights are not stored for the backward pass.

On the CPU, torch's fused SDPA kernel takes no mask that needs a gradient; its fallback (the
math kernel) first copies bf16 / fp16 queries, keys, values and mask to float32. There
:func:`attention` computes the same attention in the inputs' dtype, as the reference path
does, without those copies.
"""
from typing import Optional, Sequence, Tuple

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


class _IntoMask(torch.autograd.Function):
    """``bias`` copied into an (aligned) mask; the backward casts the mask's gradient back
    in one copy (a plain ``copy_`` into a view would add a clone of the whole buffer and a
    strided scatter to the backward)."""

    @staticmethod
    def forward(ctx, bias: torch.Tensor, shape: Tuple[int, ...], dtype: torch.dtype,
                aligned: bool) -> torch.Tensor:
        ctx.bias_shape, ctx.bias_dtype = bias.shape, bias.dtype
        mask = (aligned_empty(shape, dtype, bias.device) if aligned
                else torch.empty(shape, dtype=dtype, device=bias.device))
        mask.view(bias.shape).copy_(bias)
        return mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad.reshape(ctx.bias_shape).to(ctx.bias_dtype), None, None, None


def into_mask(bias: torch.Tensor, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """``bias`` (any shape that views as ``shape``) as an SDPA mask of ``shape`` in ``dtype``:
    cast, layout and (on CUDA) row alignment in one copy, and one copy back for its
    gradient."""
    return _IntoMask.apply(bias, tuple(shape), dtype, bias.device.type != 'cpu')


def needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd records an op on ``tensors`` here."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
              scale: Optional[float] = None) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)``; on the CPU
    with a mask that needs a gradient, the same math in the inputs' dtype (see the module's
    docstring)."""
    if q.device.type != 'cpu' or not needs_grad(mask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return (torch.matmul(q * scale, k.transpose(-2, -1)) + mask).softmax(-1) @ v


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
    attn_mask = into_mask(attn_mask.expand(nW, num_heads, N, N), (1, nW * num_heads, N, N),
                          q.dtype)
    out = attention(q, k, v, attn_mask)
    return rearrange(out, 'b (nw m) n d -> (b nw) n (m d)', m=num_heads)
