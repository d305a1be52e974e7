from .common import (ATTENTION_IMPLS, SizeCache, attention_impl, check_attention_impl,
                     get_attention_impl, resolve_attention_impl, set_attention_impl)
from .deformable_attention import DeformableAttention
from .deformable_attention_plusplus import DeformableAttentionPlusPlus
from .neighborhood_attention import NeighborhoodAttention
from .window_attention import WindowAttention

__all__ = ['ATTENTION_IMPLS', 'DeformableAttention', 'DeformableAttentionPlusPlus',
           'NeighborhoodAttention', 'SizeCache', 'WindowAttention', 'attention_impl',
           'check_attention_impl', 'get_attention_impl', 'resolve_attention_impl',
           'set_attention_impl']
