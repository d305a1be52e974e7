"""The Slurm launchers, unmodified, on a real one-node Slurm cluster (tools/ci/slurm_cluster.sh).

One work dir is shared, in the order a user meets it: ``tools/slurm_train.sh`` trains the mini
config with 2 tasks (gloo on the CPU), gets the warning signal after its first checkpoint
(``scancel --signal=USR1``: it saves, runs again and resumes) and is then cancelled with
``scancel`` (it saves and stops); ``tools/slurm_sbatch_example.sh``, submitted with
``sbatch``, resumes it with ``--resume`` and finishes; ``tools/slurm_test.sh`` evaluates the
result. The cluster has no
GPUs, so the scripts run with ``GRES=none GPUS=2 GPUS_PER_NODE=2 CPUS_PER_TASK=1``.

Where Slurm can't be started (no root, no packages), these tests are skipped and say why;
with ``DAT_REQUIRE_SLURM=1`` (set by .ci/run) that is a failure instead.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / 'tools' / 'ci' / 'slurm_cluster.sh'
MINI = 'configs/dat/dat-mini_1xb32_shapes.py'
SLURM_ENV = dict(GRES='none', GPUS='2', GPUS_PER_NODE='2', CPUS_PER_TASK='1')


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def shrink(data):
    """--cfg-options that make the mini config a few seconds' job on the generated data."""
    options = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options += [f'{loader}.dataset.data_root={data}', f'{loader}.batch_size=4',
                    f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    return options + ['default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=1',
                      'default_hooks.checkpoint.max_keep_ckpts=-1']


def job_env(**extra):
    return {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1',
            'MASTER_PORT': str(free_port()), **SLURM_ENV, **extra}


def train_entries(log_text):
    """(epoch, iteration in epoch, iterations in epoch) of each logged training step."""
    return [tuple(map(int, m)) for m in
            re.findall(r'Epoch\(train\)\s+\[(\d+)\]\[\s*(\d+)/(\d+)\]', log_text)]


def read_last_checkpoint(work_dir):
    return Path((work_dir / 'last_checkpoint').read_text().strip())


@pytest.fixture(scope='module')
def slurm_partition(request):
    """A running one-node cluster (started here unless it already runs): the name of its
    partition."""
    def say(line):  # on the terminal, past pytest's output capture
        reporter = request.config.pluginmanager.get_plugin('terminalreporter')
        capture = request.config.pluginmanager.get_plugin('capturemanager')
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)

    env = dict(os.environ)
    cmd = ['bash', str(CLUSTER)]
    if os.geteuid() != 0 and shutil.which('sudo') and subprocess.run(
            ['sudo', '-n', 'true'], capture_output=True).returncode == 0:
        cmd = ['sudo', '-n', '-E'] + cmd
    was_running = subprocess.run(cmd + ['status'], capture_output=True, env=env).returncode == 0
    start = time.monotonic()
    result = subprocess.run(cmd + ['start'], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        reason = (f'no Slurm cluster: `bash tools/ci/slurm_cluster.sh start` exited with '
                  f'{result.returncode}: {(result.stderr or result.stdout).strip()[-1500:]}')
        if os.environ.get('DAT_REQUIRE_SLURM') == '1':
            pytest.fail(f'DAT_REQUIRE_SLURM=1 but {reason}', pytrace=False)
        pytest.skip(reason)
    say(f'\n[slurm] cluster {"was already running" if was_running else "started"} in '
        f'{time.monotonic() - start:.1f} s: {result.stdout.strip().splitlines()[-1]}')
    conf = os.environ.get('DAT_SLURM_DIR', '/tmp/dat-slurm') + '/slurm.conf'
    os.environ.setdefault('SLURM_CONF', conf)
    yield os.environ.get('DAT_SLURM_PARTITION', 'debug')
    # stop it if it was started here and no one else's jobs are queued on it
    queued = subprocess.run(['squeue', '-h'], capture_output=True, text=True).stdout.strip()
    if not was_running and not queued:
        subprocess.run(cmd + ['stop'], capture_output=True, env=env)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """The shapes dataset, 4 training and 2 validation images per class (24 and 12)."""
    root = tmp_path_factory.mktemp('slurm_data')
    subprocess.run([sys.executable, 'tools/dataset_converters/make_shapes_dataset.py',
                    str(root), '--train', '4', '--val', '2', '--size', '32'],
                   cwd=REPO, check=True, capture_output=True)
    return root


def wait_for(proc, log, done, what, timeout=600):
    start = time.monotonic()
    while not done():
        assert proc.poll() is None, f'slurm_train.sh ended early:\n{log.read_text()[-5000:]}'
        assert time.monotonic() - start < timeout, f'no {what} after {timeout} s'
        time.sleep(0.5)


def job_ids(name):
    return subprocess.run(['squeue', '-h', '-n', name, '-o', '%i'], capture_output=True,
                          text=True, check=True).stdout.split()


@pytest.fixture(scope='module')
def cancelled(slurm_partition, data, tmp_path_factory):
    """tools/slurm_train.sh, asked for 50 epochs: after its first checkpoint it gets the
    warning signal (``scancel --signal=USR1``), saves, and runs again, resuming; once that
    job trains, a plain ``scancel`` stops it for good."""
    root = tmp_path_factory.mktemp('slurm')
    work_dir = root / 'work_dir'
    job = f'dat-ci-train-{os.getpid()}'
    log = root / 'slurm_train.log'
    start = time.monotonic()
    with open(log, 'w') as out:
        proc = subprocess.Popen(
            ['bash', 'tools/slurm_train.sh', slurm_partition, job, MINI, str(work_dir),
             '--cfg-options', *shrink(data), 'train_cfg.max_epochs=50'],
            cwd=REPO, env=job_env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(proc, log, (work_dir / 'last_checkpoint').is_file, 'checkpoint')
            first = job_ids(job)
            subprocess.run(['scancel', '--signal=USR1', *first], check=True)
            # the second srun, once it trains
            wait_for(proc, log, lambda: (set(job_ids(job)) - set(first)) and 'Epoch(train)' in
                     log.read_text().partition('resumed epoch')[2], 'requeued job')
            second = job_ids(job)
            subprocess.run(['scancel', *second], check=True)
            returncode = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    return dict(root=root, work_dir=work_dir, job_ids=second, log=log.read_text(),
                returncode=returncode, seconds=time.monotonic() - start)


def iteration(epoch, batch, per_epoch=3):
    return (epoch - 1) * per_epoch + batch


@pytest.fixture(scope='module')
def resumed(cancelled, slurm_partition, data):
    """The same work dir, resumed by tools/slurm_sbatch_example.sh (sbatch --wait) to the end
    of the epoch that the cancelled job stopped in."""
    work_dir = cancelled['work_dir']
    checkpoint = read_last_checkpoint(work_dir)
    iters = torch.load(checkpoint, map_location='cpu', weights_only=False)['meta']['iter']
    epoch = iters // 3  # epochs done
    out = cancelled['root'] / 'sbatch-%j.out'
    start = time.monotonic()
    result = subprocess.run(
        ['sbatch', '--wait', '-p', slurm_partition, '--job-name', f'dat-ci-sbatch-{os.getpid()}',
         '--gres=none', '--ntasks=2', '--ntasks-per-node=2', '--cpus-per-task=1',
         f'--output={out}', 'tools/slurm_sbatch_example.sh', MINI, str(work_dir),
         '--cfg-options', *shrink(data), f'train_cfg.max_epochs={epoch + 1}'],
        cwd=REPO, env=job_env(), capture_output=True, text=True)
    job_id = re.search(r'Submitted batch job (\d+)', result.stdout).group(1)
    log = Path(str(out).replace('%j', job_id)).read_text()
    assert result.returncode == 0, f'sbatch job failed:\n{result.stderr}\n{log[-5000:]}'
    return dict(epoch=epoch, iters=iters, log=log, seconds=time.monotonic() - start)


@pytest.mark.slow
def test_slurm_train_runs_two_tasks_requeues_and_is_cancelled(cancelled):
    log = cancelled['log']
    # the srun command of the script: no --gres (GRES=none), 2 tasks, 1 CPU each, and the
    # warning signal; run twice: the warning signal requeues, scancel does not
    sruns = [line for line in log.splitlines() if line.startswith('+ srun')]
    assert len(sruns) == 2, log[-5000:]
    assert '--gres' not in sruns[0]
    assert '--ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --kill-on-bad-exit=1 ' \
        '--signal=USR1@120' in sruns[0]
    assert 'Distributed launcher: slurm' in log
    assert 'GPU number: 2' in log  # mmengine's line for the world size
    # 24 images, 2 tasks x batch 4: 3 iterations per epoch (6 with one process)
    steps = train_entries(log)
    assert steps[:3] == [(1, 1, 3), (1, 2, 3), (1, 3, 3)]
    # SIGUSR1: saved at the last iteration trained (nothing lost), requeued, resumed there
    first, second = log.split('slurm_train.sh: stopped and saved; requeueing')
    usr1 = re.search(r'^stopped: SIGUSR1 at .*(iter_\d+|epoch_\d+)\.pth', first, re.M)
    assert usr1, first[-3000:]
    done = iteration(*train_entries(first)[-1][:2])
    assert f'resumed epoch: {done // 3}, iter: {done}' in second
    assert iteration(*train_entries(second)[0][:2]) == done + 1
    assert 'stopped: SIGUSR1' not in second and 'Traceback' not in log
    # scancel: saved again, not requeued; the script's status is the stop's
    assert re.search(r'^stopped: SIGTERM at ', second, re.M), second[-3000:]
    assert cancelled['returncode'] == 75
    assert (cancelled['work_dir'] / 'stopped_by').read_text() == 'SIGTERM'
    assert re.search(r'CANCELLED', second)
    assert not (cancelled['work_dir'] / 'epoch_50.pth').exists()
    assert (cancelled['work_dir'] / 'epoch_1.pth').is_file()
    print(f"slurm_train.sh until cancelled: {cancelled['seconds']:.1f} s")


@pytest.mark.slow
def test_sbatch_example_resumes_the_cancelled_job(cancelled, resumed):
    epoch, iters, log = resumed['epoch'], resumed['iters'], resumed['log']
    work_dir = cancelled['work_dir']
    assert f'resumed epoch: {epoch}, iter: {iters}' in log
    assert 'GPU number: 2' in log
    # it goes on where the cancelled job stopped, and ends after the epoch it was given
    assert train_entries(log) == [(epoch + 1, i, 3) for i in range(iters - 3 * epoch + 1, 4)]
    assert read_last_checkpoint(work_dir).name == f'epoch_{epoch + 1}.pth'
    scalars = sorted(work_dir.glob('*/vis_data/scalars.json'))[-1].read_text().splitlines()
    assert [json.loads(line)['iter'] for line in scalars if 'loss' in line] == \
        list(range(iters + 1, 3 * epoch + 4))
    print(f"sbatch resume: {resumed['seconds']:.1f} s")


@pytest.mark.slow
def test_slurm_test_evaluates_the_resumed_checkpoint(cancelled, resumed, slurm_partition, data):
    checkpoint = read_last_checkpoint(cancelled['work_dir'])
    start = time.monotonic()
    result = subprocess.run(
        ['bash', 'tools/slurm_test.sh', slurm_partition, f'dat-ci-test-{os.getpid()}', MINI,
         str(checkpoint), '--work-dir', str(cancelled['root'] / 'test'),
         '--cfg-options', *shrink(data)],
        cwd=REPO, env=job_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert 'GPU number: 2' in result.stdout + result.stderr
    # tools/test.py's last line, printed by rank 0 only
    lines = re.findall(r'^accuracy/top1: ([0-9.]+) accuracy/top5: ([0-9.]+)$', result.stdout,
                       re.M)
    assert len(lines) == 1, result.stdout[-3000:]
    top1, top5 = map(float, lines[0])
    assert 0 <= top1 <= top5 <= 100
    print(f'slurm_test.sh: {time.monotonic() - start:.1f} s')


@pytest.mark.slow
@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
def test_scripts_pass_the_variables_to_srun(script, tmp_path):
    """GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, the script arguments and GRES reach
    srun as mmpretrain's scripts pass them (srun and sinfo are stand-ins that record them)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text('#!/bin/sh\necho "$@" > "$SRUN_OUT"\n')
    (bin_dir / 'sinfo').write_text('#!/bin/sh\necho "$PARTITION_GRES"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)

    def srun_args(partition_gres, **env):
        out = tmp_path / 'srun_args'
        # DATA_CHECK=0: CONFIG is no config (test_slurm_scripts_check_the_data_first)
        subprocess.run(['bash', f'tools/{script}', 'part', 'job', 'CONFIG', 'DIR', '--x', 'y'],
                       cwd=REPO, check=True, capture_output=True,
                       env={**os.environ, 'PATH': f'{bin_dir}:{os.environ["PATH"]}',
                            'SRUN_OUT': str(out), 'PARTITION_GRES': partition_gres,
                            'DATA_CHECK': '0', **env})
        return out.read_text().split()

    args = srun_args('gpu:8(S:0-1)', GPUS='16', GPUS_PER_NODE='8', CPUS_PER_TASK='6',
                     SRUN_ARGS='--quotatype=auto --time=5')
    # training asks for the warning signal before the time limit (docs/faults.md)
    signal = ['--signal=USR1@120'] if script == 'slurm_train.sh' else []
    assert args[:10 + len(signal)] == [
        '-p', 'part', '--job-name=job', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8',
        '--cpus-per-task=6', '--kill-on-bad-exit=1', *signal, '--quotatype=auto', '--time=5']
    args = args[len(signal):]
    assert args[10:13] == ['python', '-u', f'tools/{script[6:-3]}.py']
    assert args[-5:-3] == ['CONFIG', 'DIR' if script == 'slurm_test.sh' else '--work-dir=DIR']
    assert args[-3:] == ['--launcher=slurm', '--x', 'y']
    # defaults: 8 tasks, 8 per node, 5 CPUs each
    args = srun_args('gpu:8')
    assert '--gres=gpu:8' in args and '--ntasks=8' in args and '--cpus-per-task=5' in args
    # GRES: auto leaves --gres out where the partition has no GPUs; none always; else as given
    assert not any(a.startswith('--gres') for a in srun_args('(null)', GPUS_PER_NODE='2'))
    assert not any(a.startswith('--gres') for a in srun_args('gpu:8', GRES='none'))
    assert '--gres=gpu:a100:4' in srun_args('(null)', GRES='gpu:a100:4')


# A stand-in for srun: call N stops with the N-th signal of STOPS (writes WORK_DIR/stopped_by
# as train.py does, exits with 75) or, past the list, finishes (exit 0); each call is a line
# of CALLS.
FAKE_SRUN = r"""#!/usr/bin/env bash
echo "auto=${DAT_AUTO_RESUME:-} stop_signals=${DAT_STOP_SIGNALS:-} $*" >> "$CALLS"
IFS=, read -ra stops <<< "$STOPS"
stop=${stops[$(($(wc -l < "$CALLS") - 1))]:-}
[ -z "$stop" ] && exit 0
mkdir -p "$WORK_DIR" && printf %s "$stop" > "$WORK_DIR/stopped_by" && exit 75
"""


@pytest.mark.parametrize('stops, env, calls, requeued, returncode', [
    # outside sbatch: a new srun after each stop by the warning signal, which resumes
    ('SIGUSR1,SIGUSR1', {}, 3, None, 0),
    # inside an sbatch job: the job is queued again (and resumes: SLURM_RESTART_COUNT)
    ('SIGUSR1', {'SLURM_JOB_ID': '42'}, 1, 'requeue 42', 75),
    # scancel (SIGTERM) and Ctrl-C stop for good; so does any stop with REQUEUE=0
    ('SIGTERM', {}, 1, None, 75),
    ('SIGINT', {'SLURM_JOB_ID': '42'}, 1, None, 75),
    ('SIGUSR1', {'REQUEUE': '0', 'SLURM_JOB_ID': '42'}, 1, None, 75),
    # another signal, given by number
    ('SIGUSR2', {'SIGNAL': '12', 'SIGNAL_TIME': '300'}, 2, None, 0),
])
def test_slurm_train_requeues_on_its_warning_signal(tmp_path, stops, env, calls, requeued,
                                                    returncode):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text(FAKE_SRUN)
    (bin_dir / 'scontrol').write_text('#!/bin/sh\necho "$@" >> "$SCONTROL_OUT"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    work_dir, calls_file, scontrol = tmp_path / 'work', tmp_path / 'calls', tmp_path / 'scontrol'
    base = {k: v for k, v in os.environ.items()
            if not k.startswith('SLURM_') and k not in ('DAT_AUTO_RESUME', 'REQUEUE', 'SIGNAL')}
    result = subprocess.run(
        ['bash', 'tools/slurm_train.sh', 'part', 'job', 'CONFIG', str(work_dir)], cwd=REPO,
        capture_output=True, text=True,
        env={**base, 'PATH': f'{bin_dir}:{os.environ["PATH"]}', 'DATA_CHECK': '0',
             'GRES': 'none', 'STOPS': stops, 'CALLS': str(calls_file), 'WORK_DIR': str(work_dir),
             'SCONTROL_OUT': str(scontrol), **env})
    assert result.returncode == returncode, result.stderr
    lines = calls_file.read_text().splitlines()
    assert len(lines) == calls, lines
    signal, seconds = env.get('SIGNAL', 'USR1'), env.get('SIGNAL_TIME', '120')
    # only the srun calls after a requeue resume by themselves
    assert [line.split()[:2] for line in lines] == \
        [['auto=' if i == 0 else 'auto=1', f'stop_signals={signal}'] for i in range(calls)]
    assert all(f'--signal={signal}@{seconds}' in line.split() for line in lines)
    assert (scontrol.read_text().strip() if scontrol.exists() else None) == requeued
