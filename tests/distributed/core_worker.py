"""One worker of a framework-free job (the rank comes from RANK / WORLD_SIZE, as torchrun sets).

Usage: ``python core_worker.py ROOT_URL [STORAGE_OPTIONS_JSON]``. Every worker runs the same
loop with the same (globally reduced) losses; the report says what this worker's engine did.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from launch import write_report

from ckptcore import Checkpointer

LOSSES = [0.9, 0.5, 0.7, 0.3, 0.4, 0.35]


def barrier(rank: int, size: int = 2) -> None:
    """Wait until every worker got here (the collective a training step would be)."""
    where = Path(os.environ["BARRIER_DIR"])
    where.mkdir(parents=True, exist_ok=True)
    (where / str(rank)).touch()
    while len(list(where.iterdir())) < size:
        time.sleep(0.05)


def main() -> None:
    root = sys.argv[1]
    options = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    rank = int(os.environ["RANK"])
    given: list[str] = []

    def write(path: str) -> None:
        given.append(path)
        with open(path, "wb") as fh:
            np.save(fh, np.full(4, float(rank)))

    resume = bool(os.environ.get("RESUME"))
    ck = Checkpointer(root + "/m-{epoch:02d}-{loss:.2f}.npy", write=write, monitor="loss",
                      keep_best=2, storage_options=options, resume=resume)
    opened = dict(run_id=ck.run_id, best=ck.tracker.best, schedule=ck.schedule.state_dict(),
                  protected=sorted(ck.committer.protected), latest=ck.latest())
    barrier(rank)  # every worker opened the root before the chief's first save
    first = ck.manifest.latest(ck.run_id).epoch if ck.latest() else 0  # the next 0-based epoch
    saved = []
    for epoch in range(first, first + 3):
        loss = LOSSES[epoch]
        ck.on_epoch_begin(epoch)
        saved.append(ck.on_epoch_end(epoch, {"loss": loss}))
    best, latest = ck.best(), ck.latest()
    ck.close()
    write_report(rank=rank, opened=opened, chief=ck.is_chief, saved=saved, given=given, best=best, latest=latest,
                 kept=[e.path for e in ck.manifest.entries])


if __name__ == "__main__":
    main()
