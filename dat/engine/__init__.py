"""Training machinery around mmengine's Runner: checkpoints that survive kills and full
disks, a stop (or skip) at the first non-finite step, and the optimizer's no-decay rule for
the backbone's position tables; a stop signal that saves an iteration checkpoint."""
from .checkpoint_hook import (AtomicCheckpointHook, atomic_write, check_finite_weights,
                              find_resumable_checkpoint, remove_stale_temp_files,
                              save_checkpoint_atomically)
from .faults import (CheckpointSaveError, NonFiniteError, TrainingFault, UnreadableImageError,
                     last_good_checkpoint, one_line_fault)
from .nonfinite_hook import NonFiniteCheckHook
from .optim import NoDecayKeywordsConstructor, no_weight_decay_keywords
from .preemption import (StopSignalHook, TrainingStopped, add_stop_hook, exit_stopped,
                         install_stop_signals, resume_after_requeue)

__all__ = ['StopSignalHook', 'TrainingStopped', 'add_stop_hook',
           'exit_stopped', 'install_stop_signals', 'resume_after_requeue',
           'save_checkpoint_atomically', 'AtomicCheckpointHook', 'CheckpointSaveError',
           'NoDecayKeywordsConstructor', 'NonFiniteCheckHook', 'NonFiniteError',
           'TrainingFault', 'UnreadableImageError', 'atomic_write', 'check_finite_weights',
           'find_resumable_checkpoint', 'last_good_checkpoint', 'no_weight_decay_keywords',
           'one_line_fault', 'remove_stale_temp_files']
