"""Stop (or skip the step) when the loss or the gradients are not finite.

A diverged run (e.g. an lr far too high) otherwise goes on with NaN weights to the end, exits
0 and saves checkpoints of NaN; :class:`NonFiniteCheckHook` catches the first such step.
"""
import math
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop

from .faults import NonFiniteError, last_good_checkpoint

#: Key of the number of skipped steps in the message hub (saved in checkpoints, so that
#: the limit counts over a resumed run too).
SKIPPED_KEY = 'nonfinite_skipped_steps'


@HOOKS.register_module()
class NonFiniteCheckHook(Hook):
    """Catch a non-finite loss, and non-finite gradients where no loss scaler handles them.

    A step is *non-finite* when the gradient norm is NaN or inf at the moment the optimizer
    would apply it, or the loss of the iteration is. The optimizer does not apply such a
    step (its gradients are dropped), so the weights stay finite. Then, by default
    (``max_skips=0``), the run stops with a one-line
    :class:`~dat.engine.faults.NonFiniteError` that names the iteration, the values and the
    last good checkpoint; with ``max_skips=N`` up to N such steps are skipped, each with a
    one-line warning, and the run stops at the (N+1)-th. The count is kept in the
    checkpoints, so a resumed run goes on counting.

    Under fp16 AMP the loss scaler already skips steps with inf/NaN gradients (the optimizer
    is not called, or, if fused, told to skip) and lowers its scale; those steps are not
    counted, unless their loss is itself not finite.

    Cost: no host-device sync per parameter. With ``clip_grad`` (by norm) in the
    ``optim_wrapper`` (as in the DAT configs) the norm that clipping computes anyway is read:
    mmengine converts it to a Python float for the log, and this hook makes that one
    conversion itself, so no sync is added. The loss is read from the value that mmengine's
    ``RuntimeInfoHook`` has already converted for the log. Without ``clip_grad``, and only
    when ``max_skips > 0``, the hook computes the gradient norm (one
    ``torch.nn.utils.get_total_norm``) and syncs once per optimizer step; without
    ``clip_grad`` and with ``max_skips=0`` it reads the logged loss only, after the step
    (non-finite gradients then make the next loss non-finite, and the run stops there).

    In distributed runs the gradient norm is the same on every rank (it is computed after
    DDP's all-reduce), so every rank skips or stops together; the loss is each rank's own.

    Args:
        max_skips (int): how many non-finite steps to skip before stopping. Defaults to 0:
            stop at the first.
    """

    priority = 'NORMAL'  # after RuntimeInfoHook (logs the loss), before the checkpoint hook

    def __init__(self, max_skips: int = 0):
        if not isinstance(max_skips, int) or isinstance(max_skips, bool) or max_skips < 0:
            raise ValueError(f'NonFiniteCheckHook: max_skips must be an integer >= 0 (the '
                             f'number of non-finite steps to skip), got {max_skips!r}')
        self.max_skips = max_skips
        self._handles = []
        self._clip_funcs = []
        self._clip_norm: Optional[float] = None
        self._dropped_norm: Optional[float] = None
        self._applied = False

    def before_train(self, runner) -> None:
        wrappers = runner.optim_wrapper
        wrappers = list(wrappers.values()) if isinstance(wrappers, OptimWrapperDict) else [
            wrappers]
        for wrapper in wrappers:
            clip = getattr(wrapper, 'clip_func', None)
            if getattr(wrapper, 'clip_grad_kwargs', None) and clip is \
                    torch.nn.utils.clip_grad_norm_:
                self._clip_funcs.append((wrapper, clip))
                wrapper.clip_func = self._clip_and_keep_norm
            self._handles.append(wrapper.optimizer.register_step_pre_hook(self._before_step))

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        for wrapper, clip in self._clip_funcs:
            wrapper.clip_func = clip
        self._handles, self._clip_funcs = [], []

    def _clip_and_keep_norm(self, params, **kwargs) -> float:
        # mmengine's OptimWrapper logs float() of what this returns: the one sync it makes
        self._clip_norm = float(torch.nn.utils.clip_grad_norm_(params, **kwargs))
        return self._clip_norm

    def _before_step(self, optimizer, args, kwargs) -> None:
        norm, self._clip_norm = self._clip_norm, None
        if 'found_inf' in kwargs or 'grad_scaler' in kwargs:
            return  # a loss scaler hands its inf check to a fused optimizer: it skips
        if norm is None:
            if self.max_skips == 0:
                self._applied = True
                return  # the logged loss is checked after the step (see the class doc)
            grads = [p.grad for group in optimizer.param_groups for p in group['params']
                     if p.grad is not None]
            if not grads:
                return
            norm = float(torch.nn.utils.get_total_norm(grads))
        if math.isfinite(norm):
            self._applied = True
        else:
            for group in optimizer.param_groups:  # the optimizer skips params without grad
                for param in group['params']:
                    param.grad = None
            self._dropped_norm = norm

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._dropped_norm = self._clip_norm = None
        self._applied = False

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        scalars = runner.message_hub.log_scalars
        loss = scalars['train/loss'].current() if 'train/loss' in scalars else None
        dropped, self._dropped_norm = self._dropped_norm, None
        loss_bad = loss is not None and not math.isfinite(loss)
        if dropped is None and not loss_bad:
            return
        what = ', '.join(
            ([f'loss {loss}'] if loss_bad else [])
            + ([f'gradient norm {dropped}'] if dropped is not None else []))
        where = f'iteration {runner.iter + 1}'
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            where += f' (epoch {runner.epoch + 1})'
        skipped = runner.message_hub.get_info(SKIPPED_KEY, 0) + 1
        applied = 'was applied' if self._applied else 'was not applied'
        if skipped > self.max_skips:
            limit = (f'; more than max_skips={self.max_skips} non-finite steps'
                     if self.max_skips else '')
            raise NonFiniteError(
                f'non-finite {what} at {where}{limit}: the training diverged; the step '
                f'{applied}; the last good checkpoint is '
                f'{last_good_checkpoint(runner.work_dir)}; lower the lr (or enable '
                f'clip_grad), or skip such steps with '
                f'--cfg-options default_hooks.nonfinite.max_skips=N')
        runner.message_hub.update_info(SKIPPED_KEY, skipped)
        runner.logger.warning(
            f'non-finite {what} at {where}: the step {applied}; {skipped} of at most '
            f'max_skips={self.max_skips} non-finite steps so far')
