"""Importing this module applies :func:`dat.mmengine_patches.apply`: the explicit opt-in of
a config.

The DAT configs list it in ``custom_imports`` (after their adapter), so that the libraries'
own tools (``mmpretrain``'s, ``mmdet``'s and ``mmseg``'s ``tools/train.py`` and ``test.py``,
``mim``), which do not call our :func:`dat.cli.load_config`, read checkpoints as our tools
do: mmengine 0.10.7's own reader refuses the checkpoints that its Runner writes under
torch >= 2.6 (docs/internals.md). Nothing in dat imports this module; a config of your own
that inherits our runtime bases inherits the import, and one that does not can add it.
"""
from dat import mmengine_patches

mmengine_patches.apply()
