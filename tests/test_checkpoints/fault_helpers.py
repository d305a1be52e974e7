"""A toy mmengine training run (a 4-weight regression, 4 iterations per epoch) for the fault
tests: fast enough to train to the end in-process, with a switch that makes the loss NaN."""
import itertools
import logging

import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from dat.models.checkpoint import read_checkpoint

ITERS_PER_EPOCH = 4
_RUNS = itertools.count()


class ToyDataset(Dataset):

    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(2 * ITERS_PER_EPOCH, 4, generator=gen)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])

    def __len__(self):
        return len(self.x)

    def __getitem__(self, idx):
        return dict(x=self.x[idx], y=self.y[idx])


class ToyModel(BaseModel):
    """``loss = mean((x @ w - y)^2)``; ``poisoned`` multiplies the inputs by NaN."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)
        self.poisoned = False

    def forward(self, x, y, mode='loss'):
        if self.poisoned:
            x = x * float('nan')
        return dict(loss=((self.linear(x).squeeze(1) - y)**2).mean())


class PoisonHook(Hook):
    """Make the loss NaN at the given (1-based) iterations."""

    priority = 'VERY_HIGH'

    def __init__(self, iterations=()):
        self.iterations = set(iterations)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        runner.model.poisoned = runner.iter + 1 in self.iterations


def toy_runner(work_dir, max_epochs=3, max_keep_ckpts=1, max_skips=0, clip_grad=True, lr=0.01,
               poison=(), resume_from=None, checkpoint=None, by_epoch=True, hooks=(),
               shuffle=False, param_scheduler=None):
    """A Runner of the toy model with the DAT hooks: AtomicCheckpointHook (every epoch, also
    with ``by_epoch=False``: every ITERS_PER_EPOCH iterations) and NonFiniteCheckHook;
    ``poison``: iterations whose loss is NaN; ``hooks``: more custom hooks."""
    optim_wrapper = dict(optimizer=dict(type='SGD', lr=lr, momentum=0.9))
    if clip_grad:
        optim_wrapper['clip_grad'] = dict(max_norm=10.0)
    default_hooks = dict(
        checkpoint=dict(type='AtomicCheckpointHook', by_epoch=by_epoch,
                        interval=1 if by_epoch else ITERS_PER_EPOCH,
                        max_keep_ckpts=max_keep_ckpts, **(checkpoint or {})),
        logger=dict(type='LoggerHook', interval=1))
    if max_skips is not None:
        default_hooks['nonfinite'] = dict(type='NonFiniteCheckHook', max_skips=max_skips)
    return Runner(
        model=ToyModel(), work_dir=str(work_dir), default_scope='mmengine',
        train_dataloader=dict(dataset=ToyDataset(), batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=shuffle),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=optim_wrapper, param_scheduler=param_scheduler,
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs) if by_epoch else dict(
            by_epoch=False, max_iters=max_epochs * ITERS_PER_EPOCH),
        default_hooks=default_hooks, custom_hooks=[PoisonHook(poison), *hooks],
        resume=resume_from is not None, load_from=resume_from, log_level=logging.WARNING,
        randomness=dict(seed=0), experiment_name=f'toy_run_{next(_RUNS)}',
        env_cfg=dict(dist_cfg=dict(backend='gloo')))


def finite(path) -> bool:
    """Are all the weights of the checkpoint ``path`` finite?"""
    state = read_checkpoint(path)['state_dict']
    return all(bool(t.isfinite().all()) for t in state.values())
