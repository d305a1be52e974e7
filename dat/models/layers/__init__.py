from .common import (ATTENTION_IMPLS, LayerNorm2d, Mlp, attention_impl, get_attention_impl,
                     set_attention_impl)
from .deformable_attention import DeformableAttention
from .window_attention import WindowAttention

__all__ = ['ATTENTION_IMPLS', 'DeformableAttention', 'LayerNorm2d', 'Mlp', 'WindowAttention',
           'attention_impl', 'get_attention_impl', 'set_attention_impl']
