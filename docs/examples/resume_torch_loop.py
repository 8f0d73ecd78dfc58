"""A plain PyTorch loop resumes with the core ``Checkpointer``.

``Checkpointer(resume=True).resume_point()`` says what to load (``location``) and where to
continue (``initial_epoch``, ``initial_step``); ckptcore writes, commits and prunes::

    python docs/examples/resume_torch_loop.py --epochs 3 --out ckpt-torch
    python docs/examples/resume_torch_loop.py --epochs 6 --out ckpt-torch   # epochs 4-6
"""

from __future__ import annotations

import argparse
import os

import torch

from ckptcore import Checkpointer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default="ckpt-torch")
    args = parser.parse_args()

    torch.manual_seed(0)
    x = torch.randn(128, 8)
    y = x[:, :1] * 2.0
    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)

    def write(path: str) -> None:  # ckptcore hands it a staging path; the commit is atomic
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)

    ck = Checkpointer(os.path.join(args.out, "epoch-{epoch:03d}.pt"), write=write, monitor="loss",
                      keep_last=2, resume=True, save_on_preemption=True)
    start = 0
    point = ck.resume_point()
    if point is not None:
        state = torch.load(point.location, weights_only=True)  # no pickled code is run
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = point.initial_epoch
        print(f"resumed from {point.path} (epoch {point.epoch}, step {point.global_step})")
    steps = 4
    with ck:
        for epoch in range(start, args.epochs):
            ck.on_epoch_begin(epoch)
            for batch, (xb, yb) in enumerate(zip(x.chunk(steps), y.chunk(steps))):
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(model(xb), yb)
                loss.backward()
                optimizer.step()
                ck.on_train_batch_end(batch, {"loss": loss.item()})
            ck.on_epoch_end(epoch, {"loss": loss.item()})
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
    print(f"optimizer steps: {optimizer.state_dict()['state'][0]['step']:.0f}")


if __name__ == "__main__":
    main()
