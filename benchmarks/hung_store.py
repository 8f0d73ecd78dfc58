"""What a save costs while an S3 store is down: refusing, closing, or never answering.

A ``Checkpointer`` saves small NumPy checkpoints through s3fs to an endpoint on 127.0.0.1
that first relays to a real S3 API server (moto), then for a number of saves misbehaves in one
way, then answers again. With the default settings (``retries=3``, ``storage_timeout="auto"``,
ckptcore's s3fs client timeouts) it prints, per save, the seconds the training thread waited
and the connections the save opened.

Run ``python -m benchmarks.hung_store`` (``--saves``, ``--modes``, ``--json PATH``). Needs
``moto[server]`` and ``s3fs``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from typing import Any

__all__ = ["measure"]

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))  # the endpoint and S3 helpers


def measure(mode: str, saves: int, async_save: bool = False) -> list[dict[str, Any]]:
    """Per save while the endpoint is in ``mode``: seconds waited, connections, outcome."""
    import numpy as np
    from hung_server import Endpoint
    from s3_server import AWS_TEST_ENV, S3Server

    from ckptcore import Checkpointer

    os.environ.update(AWS_TEST_ENV)
    moto = S3Server().start()
    rows = []
    try:
        bucket = moto.make_bucket()
        with Endpoint("forward", ("127.0.0.1", moto.port)) as endpoint:
            options = {"client_kwargs": {"endpoint_url": endpoint.url}, "skip_instance_cache": True}
            ck = Checkpointer(f"s3://{bucket}/run/w-{{epoch}}.npy", write=lambda p: np.save(p, np.zeros(1024)),
                              storage_options=options, async_save=async_save)
            ck.on_epoch_end(0, {"val_loss": 1.0})
            ck.wait()
            endpoint.mode = mode
            for epoch in range(1, saves + 1):
                before, start = endpoint.accepted, time.monotonic()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    ck.on_epoch_end(epoch, {"val_loss": 1.0})
                rows.append({"mode": mode, "save": epoch, "waited_s": round(time.monotonic() - start, 2),
                             "connections": endpoint.accepted - before,
                             "reported": [str(w.message)[:160] for w in caught]})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            endpoint.mode = "forward"
            ck.close()
    finally:
        moto.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="close,hang", help="comma-separated, from: close, hang")
    parser.add_argument("--saves", type=int, default=4, help="saves while the store misbehaves")
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    rows = [row for mode in args.modes.split(",") for row in measure(mode.strip(), args.saves)]
    print("| store | save | training waited (s) | connections |\n|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['mode']} | {row['save']} | {row['waited_s']} | {row['connections']} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
