from .dat2022 import RENAMES, convert_dat2022, infer_arch, rename_key
from .renames import ConversionError

__all__ = ['RENAMES', 'ConversionError', 'convert_dat2022', 'infer_arch', 'rename_key']
