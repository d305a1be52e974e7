from .dat2022 import RENAMES, ConversionError, convert_dat2022, infer_arch, rename_key

__all__ = ['RENAMES', 'ConversionError', 'convert_dat2022', 'infer_arch', 'rename_key']
