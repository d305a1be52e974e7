"""Settings that let mmengine's Runner (tools/train.py, tools/test.py) run without a GPU."""
import os
import subprocess

import torch
from mmengine.config import Config


def setup_cpu_run(cfg: Config) -> None:
    """Without CUDA, adapt ``cfg`` for the CPU and start the process group of a distributed run.

    - AMP optimizer wrappers (CUDA only) become plain ``OptimWrapper``;
    - distributed runs use gloo, and DDP wraps the CPU module without ``device_ids``;
    - the gloo process group is started here, because mmengine's ``init_dist`` calls
      ``torch.cuda.set_device``; the Runner then uses the group that is already there.
      Under ``--launcher slurm`` its rendezvous variables come from :func:`slurm_env`.
    """
    if torch.cuda.is_available():
        return
    optim_wrapper = cfg.get('optim_wrapper')
    if optim_wrapper is not None and optim_wrapper.get('type') == 'AmpOptimWrapper':
        optim_wrapper.type = 'OptimWrapper'
        optim_wrapper.pop('loss_scale', None)
        optim_wrapper.pop('dtype', None)
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if cfg.get('launcher', 'none') == 'none':
        return
    # mmengine's default wrapper, with torch >= 2.13's name for not syncing buffers at every
    # forward (`broadcast_buffers` is deprecated and warns on every process).
    wrapper = dict(type='MMDistributedDataParallel', forward_sync_buffers=False,
                   find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.update(cfg.get('model_wrapper_cfg') or {}, device_ids=None)
    cfg.model_wrapper_cfg = wrapper
    if not torch.distributed.is_initialized():
        if cfg.launcher == 'slurm':
            slurm_env(cfg.env_cfg.dist_cfg.get('port'))
        torch.distributed.init_process_group('gloo')


def slurm_env(port=None) -> None:
    """Set torch's ``env://`` rendezvous variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT) from those of a Slurm task, the way mmengine's slurm launcher does: the
    master is the job's first node, and the port is ``port``, else ``MASTER_PORT``, else
    29500. ``MASTER_ADDR`` is kept when it is set."""
    env = os.environ
    first_node = subprocess.getoutput(
        f"scontrol show hostname {env['SLURM_NODELIST']} | head -n1")
    if port is not None:
        env['MASTER_PORT'] = str(port)
    env.setdefault('MASTER_PORT', '29500')
    env.setdefault('MASTER_ADDR', first_node)
    env['WORLD_SIZE'] = env['SLURM_NTASKS']
    env['RANK'] = env['SLURM_PROCID']
    env['LOCAL_RANK'] = env.get('SLURM_LOCALID', '0')


def finish_distributed() -> None:
    """Tear down the process group before the interpreter exits: a gloo group left alive
    can abort the process at exit ("terminate called without an active exception")."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
