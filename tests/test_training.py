"""The generic trainer: bit-exact resume, kill -9, atomic saves, logs, data order, torchrun.

Run as a script, this file trains the tiny task below (used by the kill -9 and
torchrun tests): ``python tests/test_training.py OUT STEPS [--resume] [--sleep S] [--ddp]``.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from probes.errors import TrainingError
from probes.training.checkpoints import (
    CheckpointError,
    atomic_save,
    load_checkpoint,
    rng_state,
    seed_everything,
    set_rng_state,
)
from probes.training.data import ArrayData, DataOrder
from probes.training.distributed import init_distributed, shutdown_distributed
from probes.training.runs import save_grid
from probes.training.trainer import Trainer, TrainerSettings, TrainTask

REPO = Path(__file__).resolve().parents[1]


class TinyTask(TrainTask):
    """A small net using every RNG (torch noise, dropout, numpy, random) so resume must restore them all."""

    kind = "tiny"

    def __init__(self, init_seed: int = 0, crash_at: int | None = None, sleep: float = 0.0, echo: bool = False):
        super().__init__()
        torch.manual_seed(init_seed)
        self.models["net"] = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2),
                                           nn.Linear(16, 2))
        self.optimizers["net"] = torch.optim.Adam(self.models["net"].parameters(), lr=1e-2)
        self.crash_at, self.sleep, self.echo = crash_at, sleep, echo
        self.seen: dict[int, list[int]] = {}

    def config(self) -> dict:
        return {"hidden": 16}

    def step(self, batch, step):
        if self.crash_at is not None and step == self.crash_at:
            raise RuntimeError("simulated crash")
        self.seen[step + 1] = batch["i"].tolist()
        x = batch["x"] + 0.01 * torch.randn_like(batch["x"])
        scale = 1 + 0.01 * np.random.rand() + 0.01 * random.random()
        loss = F.mse_loss(self.net("net")(x), batch["y"]) * scale
        opt = self.optimizers["net"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if self.sleep:
            time.sleep(self.sleep)
        if self.echo:
            print(f"step {step + 1}", flush=True)
        return {"loss": loss.item(), "scale": scale}

    def sample(self, step):
        return torch.rand(4, 3, 8, 8)  # consumes RNG: must not disturb training


def tiny_data(n: int = 50) -> ArrayData:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 6, generator=g)
    return ArrayData(x=x, y=torch.stack([x[:, 0] * 2 - x[:, 1], x[:, 2].abs()], 1), i=torch.arange(n))


def settings(steps: int, **kw) -> TrainerSettings:
    values = {"steps": steps, "batch_size": 8, "seed": 3, "save_every": 4, "keep_every": 8, "log_every": 2,
              "sample_every": 5, "progress": False}
    values.update(kw)
    return TrainerSettings(**values)


def train_straight(out: Path, steps: int, **kw) -> TinyTask:
    seed_everything(0)
    task = TinyTask()
    Trainer(task, tiny_data(), out, settings(steps, **kw)).fit()
    return task


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def log_without_time(path: Path) -> list[list[str]]:
    rows = list(csv.reader(path.open()))
    t = rows[0].index("time_s")
    return [r[:t] + r[t + 1:] for r in rows]


# --------------------------------------------------------------------------- resume


def test_resume_after_crash_is_bit_exact(tmp_path):
    straight = train_straight(tmp_path / "a", 15)

    seed_everything(0)
    crashing = TinyTask(crash_at=11)  # crashes after the step-8 save and the step-10 log row
    with pytest.raises(RuntimeError, match="simulated"):
        Trainer(crashing, tiny_data(), tmp_path / "b", settings(15)).fit()
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "latest.pt")["step"] == 8
    assert "10," in (tmp_path / "b" / "log.csv").read_text()  # a row the resume must drop

    seed_everything(999)  # a different process state: resume must restore every RNG
    resumed = TinyTask(init_seed=5)
    result = Trainer(resumed, tiny_data(), tmp_path / "b", settings(15), resume=True).fit()
    assert result.step == 15 and not result.stopped_early
    assert_same_state(straight.models["net"].state_dict(), resumed.models["net"].state_dict())
    opt_a, opt_b = straight.optimizers["net"].state_dict(), resumed.optimizers["net"].state_dict()
    for pid in opt_a["state"]:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt_a["state"][pid][key], opt_b["state"][pid][key])
    # Same batches after the resume point, and the same log (rows past the checkpoint were replaced).
    assert {k: v for k, v in straight.seen.items() if k > 8} == resumed.seen
    assert log_without_time(tmp_path / "a" / "log.csv") == log_without_time(tmp_path / "b" / "log.csv")
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == [
        "latest.pt", "step_0000008.pt"]
    assert sorted(p.name for p in (tmp_path / "b" / "samples").glob("*.png")) == [
        "step_0000005.png", "step_0000010.png", "step_0000015.png"]


def test_checkpoint_is_self_describing_and_weights_only(tmp_path):
    train_straight(tmp_path, 6)
    state = torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True)
    assert state["format"] == "faceprobe-checkpoint-1" and state["kind"] == "tiny"
    assert state["step"] == 6 and state["config"] == {"hidden": 16}
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert state["data_order"]["permutation"].shape == (50,)
    assert "0.weight" in state["models"]["net"] and "state" in state["optimizers"]["net"]
    assert state["trainer"]["batch_size"] == 8 and state["elapsed_s"] > 0


def test_rng_state_roundtrip():
    seed_everything(7)
    saved = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(saved)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_resume_refuses_other_task_and_other_batch(tmp_path):
    train_straight(tmp_path, 4)

    class Other(TinyTask):
        kind = "other"

    with pytest.raises(CheckpointError, match="'tiny' checkpoint, this is a 'other' task"):
        Trainer(Other(), tiny_data(), tmp_path, settings(8), resume=True)
    with pytest.raises(CheckpointError, match="global batch of 8"):
        Trainer(TinyTask(), tiny_data(), tmp_path, settings(8, batch_size=4), resume=True)


def test_time_limit_stops_and_saves(tmp_path):
    task = TinyTask(sleep=0.02)
    result = Trainer(task, tiny_data(), tmp_path, settings(1000, time_limit_s=0.1)).fit()
    assert result.stopped_early and 1 <= result.step < 1000
    assert load_checkpoint(tmp_path)["step"] == result.step


def test_diverged_loss_is_a_clear_error(tmp_path):
    class Diverging(TinyTask):
        def step(self, batch, step):
            return {"loss": float("nan")}

    with pytest.raises(TrainingError, match="loss loss is nan at step 1"):
        Trainer(Diverging(), tiny_data(), tmp_path, settings(3)).fit()


# --------------------------------------------------------------------------- atomic files


def test_atomic_save_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    atomic_save({"format": "faceprobe-checkpoint-1", "v": torch.ones(3)}, path)
    before = path.read_bytes()

    def broken_save(obj, handle, *a, **k):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"v": torch.zeros(3)}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]


def test_corrupt_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a zip")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    torch.save({"something": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a faceprobe training checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_checkpoint(tmp_path / "empty_run")


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TrainingError, match="cannot write to the output folder"):
        Trainer(TinyTask(), tiny_data(), blocker / "run", settings(2))


def test_save_grid_writes_png(tmp_path):
    from PIL import Image

    path = save_grid(torch.rand(10, 3, 8, 8), tmp_path / "g.png", columns=4, pad=1)
    assert Image.open(path).size == (4 * 9 + 1, 3 * 9 + 1)
    with pytest.raises(TrainingError, match="N x 3 x H x W"):
        save_grid(torch.rand(2, 8, 8), tmp_path / "h.png")


# --------------------------------------------------------------------------- data order


def test_data_order_shards_deterministically():
    single = DataOrder(50, 8, seed=3)
    ranks = [DataOrder(50, 4, seed=3, rank=r, world_size=2) for r in range(2)]
    for _ in range(14):  # more than two epochs of 6 steps
        whole = single.next_indices()
        parts = [o.next_indices() for o in ranks]
        assert np.intersect1d(*parts).size == 0
        assert sorted(np.concatenate(parts)) == sorted(whole)
    assert single.epoch == ranks[0].epoch == 2
    with pytest.raises(TrainingError, match="fewer than one batch"):
        DataOrder(5, 4, seed=0, world_size=2)


def test_settings_validation():
    with pytest.raises(TrainingError, match="steps must be a positive integer"):
        TrainerSettings(steps=0)
    with pytest.raises(TrainingError, match="keep_every"):
        TrainerSettings(keep_every=-1)


# --------------------------------------------------------------------------- subprocesses


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return env


def test_kill_9_then_resume_matches_straight_run(tmp_path):
    steps = 30
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        straight = train_straight(tmp_path / "straight", steps, save_every=1, keep_every=0, sample_every=0)
    finally:
        torch.set_num_threads(torch_threads)
    out = tmp_path / "killed"
    cmd = [sys.executable, __file__, str(out), str(steps), "--sleep", "0.05"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=_env())
    try:
        for line in proc.stdout:
            if line.startswith("step ") and int(line.split()[1]) >= 8:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)["step"]
    assert 0 < killed_at < steps  # killed mid-run, after some saves
    done = subprocess.run(cmd[:4] + ["--resume"], capture_output=True, text=True, env=_env(), timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    final = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert final["step"] == steps
    assert_same_state(straight.models["net"].state_dict(), final["models"]["net"])
    assert not list((out / "checkpoints").glob(".tmp-*"))


def test_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           __file__, str(out), "4", "--ddp"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    for step in ("1", "2", "3", "4"):
        a, b = ranks[0]["seen"][step], ranks[1]["seen"][step]
        assert len(a) == len(b) == 4 and not set(a) & set(b)
    # DDP averaged the gradients: both processes end with the same weights.
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest.pt"]
    state = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert state["step"] == 4 and state["world_size"] == 2
    assert abs(sum(state["models"]["net"]["0.weight"].flatten().tolist()) - ranks[0]["weights"]) < 1e-6
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [r["step"] for r in rows] == ["2", "4"]


def test_the_progress_bar_shows_the_total_loss_first():
    from probes.training.progress import bar_postfix

    row = {"gradient": 0.5, "identity": 0.25, "local_gradient": 0.1, "local_pixel": 0.2, "loss": 1.5, "lr": 1e-3}
    assert list(bar_postfix(row)) == ["loss", "gradient", "identity", "local_gradient"]
    assert bar_postfix(row)["loss"] == "1.5"
    gan = {"d_fake": 0.3, "d_loss": 0.7, "d_real": 0.6, "g_loss": 1.2, "phase": 0.0}
    assert list(bar_postfix(gan, terms=3)) == ["d_loss", "g_loss", "d_fake"]


def _script(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("steps", type=int)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--ddp", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    ctx = init_distributed("cpu") if args.ddp else None
    seed_everything(0)
    task = TinyTask(sleep=args.sleep, echo=True)
    kw = {"batch_size": 4} if args.ddp else {"save_every": 1, "keep_every": 0, "sample_every": 0}
    trainer = Trainer(task, tiny_data(), args.out, settings(args.steps, **kw), ctx, resume=args.resume)
    trainer.fit()
    if args.ddp:
        weights = sum(task.models["net"][0].weight.flatten().tolist())
        record = {"rank": ctx.rank, "world_size": ctx.world_size, "seen": task.seen, "weights": weights}
        Path(args.out, f"rank{ctx.rank}.json").write_text(json.dumps(record))
        shutdown_distributed(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(_script(sys.argv[1:]))

