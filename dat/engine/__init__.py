"""Training machinery around mmengine's Runner: checkpoints that survive kills."""
from .checkpoint_hook import (AtomicCheckpointHook, AtomicLocalBackend, atomic_write,
                              find_resumable_checkpoint)

__all__ = ['AtomicCheckpointHook', 'AtomicLocalBackend', 'atomic_write',
           'find_resumable_checkpoint']
