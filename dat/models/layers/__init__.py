from .common import LayerNorm2d, Mlp
from .deformable_attention import DeformableAttention
from .window_attention import WindowAttention

__all__ = ['DeformableAttention', 'LayerNorm2d', 'Mlp', 'WindowAttention']
