"""Thin adapters that register the DAT backbone into the OpenMMLab task registries.

Each task's configs import the one they need through ``custom_imports``:
``dat.adapters.mmpretrain``, ``dat.adapters.mmdet`` or ``dat.adapters.mmseg``.
The backbone itself (``dat.models``) needs none of these libraries.
"""

# The checkpoint hook (AtomicCheckpointHook) and the optimizer wrapper constructor
# (NoDecayKeywordsConstructor) of the DAT configs, registered with mmengine.
import dat.engine  # noqa: F401,E402
