from .common import (ATTENTION_IMPLS, LayerNorm2d, Mlp, SizeCache, attention_impl,
                     check_attention_impl, get_attention_impl, resolve_attention_impl,
                     set_attention_impl)
from .deformable_attention import DeformableAttention
from .window_attention import WindowAttention

__all__ = ['ATTENTION_IMPLS', 'DeformableAttention', 'LayerNorm2d', 'Mlp', 'SizeCache',
           'WindowAttention', 'attention_impl', 'check_attention_impl', 'get_attention_impl',
           'resolve_attention_impl', 'set_attention_impl']
