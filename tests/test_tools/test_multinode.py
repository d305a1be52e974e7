"""Two "nodes" with tools/dist_train.sh: two launchers on this machine (NNODES=2, NODE_RANK=0
and 1, MASTER_ADDR=127.0.0.1, one process each) train the mini config together."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
MINI = 'configs/dat/dat-mini_1xb32_shapes.py'

# Saves, on every rank, the world size and the weights before and after training.
PROBE = """
import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class RankProbe(Hook):
    def __init__(self, out_dir):
        self.out_dir = out_dir

    def _save(self, runner, when):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        rank, world_size = get_dist_info()
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save(dict(rank=rank, world_size=world_size, state_dict=state),
                   f'{self.out_dir}/{when}_rank{rank}.pth')

    def before_train(self, runner):
        self._save(runner, 'before')

    def after_train(self, runner):
        self._save(runner, 'after')
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_train_together(tmp_path):
    data = tmp_path / 'data'
    subprocess.run([sys.executable, 'tools/dataset_converters/make_shapes_dataset.py',
                    str(data), '--train', '4', '--val', '1', '--size', '32'],
                   cwd=REPO, check=True, capture_output=True)
    (tmp_path / 'rank_probe.py').write_text(PROBE)
    config = tmp_path / 'mini_probe.py'
    config.write_text(
        f"_base_ = ['{REPO / MINI}']\n"
        "custom_imports = dict(imports=['dat.adapters.mmpretrain', 'rank_probe'],\n"
        "                      allow_failed_imports=False)\n"
        f"custom_hooks = [dict(type='RankProbe', out_dir='{tmp_path}')]\n")
    options = ['--cfg-options', f'train_dataloader.dataset.data_root={data}',
               'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
               'train_dataloader.persistent_workers=False', 'train_cfg.max_epochs=1',
               'default_hooks.logger.interval=1']
    port = str(free_port())
    launchers = []
    for node_rank in (0, 1):
        env = {**os.environ, 'PYTHONPATH': f'{REPO}{os.pathsep}{tmp_path}', 'NNODES': '2',
               'NODE_RANK': str(node_rank), 'MASTER_ADDR': '127.0.0.1', 'PORT': port}
        launchers.append(subprocess.Popen(
            ['bash', 'tools/dist_train.sh', str(config), '1',
             '--work-dir', str(tmp_path / 'work_dir'), '--no-validate', *options],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [launcher.communicate(timeout=600)[0] for launcher in launchers]
    for node_rank, (launcher, log) in enumerate(zip(launchers, logs)):
        assert launcher.returncode == 0, f'node {node_rank}:\n{log[-5000:]}'
    assert 'GPU number: 2' in logs[0]  # mmengine's line for the world size
    # 24 images, 2 processes x batch 4: 3 iterations (6 with one process)
    assert 'Epoch(train) [1][3/3]' in logs[0]

    saved = {(when, rank): torch.load(tmp_path / f'{when}_rank{rank}.pth', weights_only=True)
             for when in ('before', 'after') for rank in (0, 1)}
    assert {(s['rank'], s['world_size']) for s in saved.values()} == {(0, 2), (1, 2)}
    before, after = saved['before', 0]['state_dict'], saved['after', 0]['state_dict']
    assert any(not torch.equal(before[k], after[k]) for k in before), 'the weights did not change'
    other = saved['after', 1]['state_dict']
    assert after.keys() == other.keys()
    for key in after:
        assert torch.equal(after[key], other[key]), f'{key} differs between the two nodes'
