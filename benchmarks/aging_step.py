"""Where an IPCGAN training step spends its time on a CPU: steps/s and the share of each part.

    python benchmarks/aging_step.py --threads 1 --batch-size 16 --g-width 32 --out results/benchmarks/aging_step.json

Times, on one batch of real-sized (64 px) random faces, each part of the step the age-reader recipe runs
(README, "Aging GANs"): the generator forward, the discriminator update, the identity loss (dlib
ResNet-29 at the 200 px UTKFace frame), the age reader (face-api AgeGenderNet on an augmented view),
the generator backward through all of them, and the whole step through ``IPCGANTask.step``. Parts are
timed separately (best of ``--repeats``; the identity and age parts on a fixed generated batch, without
the generator) so their sum need not equal the whole step. The one-minute
load average is recorded: on a shared machine the absolute numbers move, the shares much less.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from _timing import load_average, write_record

from decoders.aging.age_reader import AgeReader, age_reading_loss
from decoders.aging.blocks import lsgan_d_loss, lsgan_g_loss
from decoders.aging.data import AgingFaces
from decoders.aging.groups import IPCGAN_GROUPS
from decoders.aging.identity import IdentityFeatures
from decoders.aging.ipcgan import IPCGANConfig, build_task
from probes.outputs import provenance


def best_of(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def random_faces(n: int, size: int = 64) -> AgingFaces:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    group = np.arange(n) % len(IPCGAN_GROUPS)
    ages = np.asarray(IPCGAN_GROUPS.lower, float)[group] + 2
    zeros = np.zeros(n, np.int64)
    return AgingFaces(images, ages, zeros, zeros, group, IPCGAN_GROUPS, [f"f{i}.jpg" for i in range(n)])


def measure(args) -> dict:
    config = IPCGANConfig(g_width=args.g_width, age=0, age_reader="faceapi-agegender", age_regression=0.1,
                          sex_keep=1.0)
    faces = random_faces(max(2 * args.batch_size, 32))
    identity = IdentityFeatures(config.identity_backbone)
    reader = AgeReader(config.age_reader)
    task = build_task(config, train=faces, val=None, identity=identity, age_classifier=None, age_reader=reader)
    batch = {"images": torch.from_numpy(faces.images[:args.batch_size]), "group": torch.from_numpy(
        faces.group[:args.batch_size]), "index": torch.arange(args.batch_size)}
    x = batch["images"].permute(0, 3, 1, 2).float() / 255
    target = torch.randint(0, len(IPCGAN_GROUPS), (args.batch_size,))
    generator, disc = task.models["generator"], task.models["discriminator"]
    task.step(batch, 0)  # warm-up: caches filled, allocations made
    with torch.no_grad():
        fixed_fake = generator(x, target)

    def discriminator_update():
        with torch.no_grad():
            fake = generator(x, target)
        lsgan_d_loss(disc(x, batch["group"]), disc(fake, target), disc(x, (target + 1) % 5)).backward()

    def generator_forward_backward_gan_only():
        lsgan_g_loss(disc(generator(x, target), target)).backward()

    def identity_loss_forward_backward():
        fake = fixed_fake.clone().requires_grad_(True)
        IdentityFeatures.distance(identity(fake), identity(x).detach()).mean().backward()

    def age_reader_forward_backward():
        fake = fixed_fake.clone().requires_grad_(True)
        age_reading_loss(reader(fake, augment=True)[0], torch.full((len(x),), 40.0)).backward()

    parts = {"discriminator update (3 D passes + backward)": discriminator_update,
             "generator + GAN loss, forward and backward": generator_forward_backward_gan_only,
             "identity loss (dlib at 200 px), forward and backward": identity_loss_forward_backward,
             "age reader (face-api, augmented view), forward and backward": age_reader_forward_backward}
    seconds = {name: best_of(run, args.repeats) for name, run in parts.items()}
    step = best_of(lambda: task.step(batch, 1), args.repeats)
    return {"step_s": step, "steps_per_s": 1 / step, "parts_s": seconds,
            "parts_share_of_step": {k: v / step for k, v in seconds.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=16, help="faces per step (default 16)")
    parser.add_argument("--g-width", type=int, default=32, help="generator width (default 32)")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many timings (default 5)")
    parser.add_argument("--out", default="results/benchmarks/aging_step.json", help="JSON file to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = load_average()
    record = measure(args)
    record.update(settings=vars(args), load_average_before=load_before, load_average_after=load_average(),
                  command=" ".join(["python", "benchmarks/aging_step.py", *(argv or sys.argv[1:])]),
                  provenance=provenance())
    print(f"{record['steps_per_s']:.2f} steps/s ({record['step_s']:.2f} s/step), load {load_before:.1f}")
    for name, share in record["parts_share_of_step"].items():
        print(f"  {share:6.1%}  {record['parts_s'][name]:.3f} s  {name}")
    write_record(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
