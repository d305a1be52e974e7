"""Training machinery around mmengine's Runner: checkpoints that survive kills, and the
optimizer's no-decay rule for the backbone's position tables."""
from .checkpoint_hook import (AtomicCheckpointHook, AtomicLocalBackend, atomic_write,
                              find_resumable_checkpoint)
from .optim import NoDecayKeywordsConstructor, no_weight_decay_keywords

__all__ = ['AtomicCheckpointHook', 'AtomicLocalBackend', 'NoDecayKeywordsConstructor',
           'atomic_write', 'find_resumable_checkpoint', 'no_weight_decay_keywords']
