"""Crash safety of training: kill -9 mid-iteration and during a checkpoint write, then --resume
finishes; a failing write (file size limit, as with a full disk) keeps the previous checkpoint;
unreadable images are skipped and counted; a W&B failure never stops training."""
import glob
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from engine_helpers import REPO, SMALL_CONFIG, TRAIN_NET, run_cli, tiny_opts


def _popen(out, synth_dir, *extra, env=None):
    """train_net.py --resume with a 10-iteration run checkpointed every 2 iterations."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.Popen(
        [sys.executable, TRAIN_NET, "--config-file", SMALL_CONFIG, "--resume",
         *tiny_opts(synth_dir),
         "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "10", "SOLVER.CHECKPOINT_PERIOD", "2",
         "TEST.EVAL_PERIOD", "0", "WANDB.MODE", "disabled", "SOLVER.MAX_TO_KEEP", "2", *extra],
        cwd=REPO, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for(predicate, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _last(out):
    with open(os.path.join(out, "last_checkpoint")) as f:
        return f.read().strip()


def _temp_files(out):
    return glob.glob(os.path.join(out, ".*.tmp"))


def test_kill_9_mid_iteration_and_during_checkpoint_write_then_resume(tmp_path, synth_dir):
    out = tmp_path / "killed"
    # 1. kill -9 in the middle of training, once a first checkpoint exists
    proc = _popen(out, synth_dir)
    assert _wait_for(lambda: os.path.isfile(out / "last_checkpoint"), proc), "no checkpoint"
    time.sleep(1.0)  # inside a later iteration
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = _last(out)
    assert torch.load(out / first, weights_only=True)["iteration"] >= 1

    # 2. kill -9 while a checkpoint is being written (the debugging knob holds the write open
    # between writing the bytes and the rename)
    proc = _popen(out, synth_dir, env={"BIKESTATE_DEBUG_SAVE_DELAY": "60"})
    assert _wait_for(lambda: _temp_files(out), proc), "the checkpoint write never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _temp_files(out)  # the half-written file is a temporary, not a checkpoint
    last = _last(out)
    assert torch.load(out / last, weights_only=True)["iteration"] >= int(first[6:13])

    # 3. resume finishes the run; every checkpoint loads; the temporary file is gone
    proc = run_cli("--config-file", SMALL_CONFIG, "--resume", *tiny_opts(synth_dir),
                   "OUTPUT_DIR", out, "SOLVER.MAX_ITER", "10", "SOLVER.CHECKPOINT_PERIOD", "2",
                   "TEST.EVAL_PERIOD", "0", "WANDB.MODE", "disabled", "SOLVER.MAX_TO_KEEP", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"Resumed from {out}/{last}" in proc.stdout + proc.stderr
    assert _last(out) == "model_final.pth"
    assert not _temp_files(out)
    for path in glob.glob(str(out / "*.pth")):
        ckpt = torch.load(path, weights_only=True)
        assert "model" in ckpt, path
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == 9
    periodic = sorted(os.path.basename(p) for p in glob.glob(str(out / "model_0*.pth")))
    assert periodic == ["model_0000007.pth", "model_0000009.pth"]  # MAX_TO_KEEP 2


_DISK_FULL = r"""
import os, resource, signal, sys, torch
from bikestate.checkpoint import CheckpointWriteError, TrainingCheckpointer
out = sys.argv[1]
model = torch.nn.Linear(64, 64)
ck = TrainingCheckpointer(model, out)
ck.save("model_0000000")
size = os.path.getsize(os.path.join(out, "model_0000000.pth"))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # get EFBIG instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4096, size + 4096))
try:
    ck.save("model_0000001", extra=torch.zeros(1_000_000))
except CheckpointWriteError as e:
    print("ERROR:", e)
"""


def test_failing_write_keeps_previous_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _DISK_FULL, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    msg = [line for line in proc.stdout.splitlines() if line.startswith("ERROR:")]
    assert msg, proc.stdout + proc.stderr
    assert "could not write checkpoint" in msg[0] and "model_0000001.pth" in msg[0]
    assert "model_0000000.pth is intact" in msg[0]
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000000.pth"]
    assert _last(tmp_path) == "model_0000000.pth"
    assert "model" in torch.load(tmp_path / "model_0000000.pth", weights_only=True)


@pytest.fixture
def own_datasets():
    """This test registers bike_* from its own SynthBikes copy: unregister around it."""
    from bikestate.data.catalog import unregister_bike_dataset

    names = ("bike_train", "bike_val", "bike_test")
    for name in names:
        unregister_bike_dataset(name)
    yield
    for name in names:
        unregister_bike_dataset(name)


def test_unreadable_training_images_are_skipped_and_counted(tmp_path, train_net, make_args,
                                                            own_datasets):
    from bikestate.data.catalog import unregister_bike_dataset
    from bikestate.engine import BikeStateTrainer
    from bikestate.utils.errors import DataError
    from detectron2.data import DatasetCatalog

    own_synth = tmp_path / "synth"  # this test damages images: its own copy of the data
    opts = ["BIKESTATE.DATA.SYNTH_CACHE_DIR", own_synth, "SOLVER.MAX_ITER", "4",
            "TEST.EVAL_PERIOD", "0", "TEST.VAL_LOSS", "False", "WANDB.MODE", "disabled",
            "SOLVER.CHECKPOINT_PERIOD", "100", "DATASETS.TEST", "()"]
    cfg = train_net.setup(make_args(tmp_path / "skip", *opts,
                                    "BIKESTATE.DATA.MAX_SKIPPED_IMAGES", "5"))
    files = sorted(d["file_name"] for d in DatasetCatalog.get("bike_train"))
    with open(files[0], "wb") as f:
        f.write(b"not a jpeg")  # corrupt
    os.remove(files[1])  # vanished
    trainer = BikeStateTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    # 4 iterations x 2 images = one pass over the 8 images: both bad ones are met
    assert trainer.storage.latest()["data/skipped_images"][0] >= 2

    for name in ("bike_train", "bike_val"):
        unregister_bike_dataset(name)
    cfg = train_net.setup(make_args(tmp_path / "limit", *opts,
                                    "BIKESTATE.DATA.MAX_SKIPPED_IMAGES", "0"))
    with open(files[0], "wb") as f:  # registration regenerated nothing: still broken
        f.write(b"not a jpeg")
    trainer = BikeStateTrainer(cfg)
    trainer.resume_or_load(resume=False)
    with pytest.raises(DataError, match="could not be read.*MAX_SKIPPED_IMAGES=0"):
        trainer.train()


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def count(self, text):
        return len([r for r in self.records if text in r.getMessage()])


def test_wandb_failure_is_one_warning_and_training_goes_on(tmp_path):
    from bikestate.config import add_bikestate_config
    from bikestate.engine.wandb_writer import WandbWriter, resolve_wandb_mode
    from detectron2.config import get_cfg
    from detectron2.utils.events import EventStorage

    cfg = add_bikestate_config(get_cfg())
    cfg.WANDB.MODE = "offline"
    # the run cannot even start: OUTPUT_DIR lies under a file
    (tmp_path / "file").write_text("x")
    cfg.OUTPUT_DIR = str(tmp_path / "file" / "out")
    records = _Records()
    logging.getLogger("bikestate.engine.wandb_writer").addHandler(records)
    writer = WandbWriter(cfg)
    with EventStorage(0) as storage:
        storage.put_scalar("total_loss", 1.0)
        writer.write()
    writer.close()
    assert not writer.enabled
    assert records.count("W&B logging is turned off") == 1

    # the run breaks mid-training (finished underneath the writer): one warning, no exception
    records.records.clear()
    cfg.OUTPUT_DIR = str(tmp_path / "ok")
    writer = WandbWriter(cfg)
    assert writer.enabled
    writer.run.finish()
    with EventStorage(0) as storage:
        for it in range(3):
            storage.iter = it
            storage.put_scalar("total_loss", 1.0)
            writer.write()
    writer.close()
    logging.getLogger("bikestate.engine.wandb_writer").removeHandler(records)
    assert not writer.enabled
    assert records.count("W&B logging is turned off") == 1

    assert resolve_wandb_mode("auto", {"WANDB_MODE": "disabled"}) == "disabled"
    assert resolve_wandb_mode("auto", {"WANDB_API_KEY": "x" * 40}) == "online"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert resolve_wandb_mode("auto", {"NETRC": str(netrc)}) == "online"
    assert resolve_wandb_mode("auto", {"NETRC": str(tmp_path / "none")}) == "offline"
    assert resolve_wandb_mode("offline", {"WANDB_API_KEY": "x"}) == "offline"


def test_wandb_logs_the_last_value_of_a_scalar_put_twice_in_one_iteration(tmp_path):
    """The LR after a plateau reduction is put again in the same iteration (as are model
    scalars under gradient accumulation): W&B gets the last value, as metrics.json does."""
    from detectron2.config import get_cfg
    from detectron2.utils.events import EventStorage
    from wandb_files import offline_runs, read_run

    from bikestate.config import add_bikestate_config
    from bikestate.engine.wandb_writer import WandbWriter

    cfg = add_bikestate_config(get_cfg())
    cfg.WANDB.MODE = "offline"
    cfg.OUTPUT_DIR = str(tmp_path)
    writer = WandbWriter(cfg)
    with EventStorage(0) as storage:
        for it in range(2):
            storage.iter = it
            storage.put_scalar("lr", 0.004, smoothing_hint=False)
            storage.put_scalar("lr", 0.002 if it else 0.004, smoothing_hint=False)
            writer.write()
        assert storage.latest()["lr"] == (0.002, 1)
    writer.close()
    history = {row["_step"]: row for row in read_run(offline_runs(str(tmp_path))[0])["history"]}
    assert history[1]["learning_rate"] == 0.002
