"""Run the benchmarks and write ``benchmarks/results/`` (``make bench``).

Three scenarios, each in processes of its own:

* **sweep**: MLPs with about 10 MB to 1 GB of weights and Adam state, 6 steps per epoch
  and a save at every epoch end; measures the training thread's time blocked per save, the
  wall time of ``fit``, peak RSS and whether every checkpoint is complete when ``fit`` returns.
* **fitcost**: a small model with many batches per epoch, saved every epoch; ``fit`` wall time
  of each contender against no callback, the contenders interleaved over several rounds.
* **limits**: at the target size, the physical references (memory copy, raw ``write`` +
  ``fsync``, raw S3 upload of the same bytes), the writer alone, fits where the writer keeps
  up (20 steps per epoch) and saves back to back (2 steps per epoch), in one process,
  interleaved in rounds (:mod:`benchmarks.limits`).

Usage::

    python -m benchmarks.run            # the full run (about 20 minutes on 2 cores)
    python -m benchmarks.run --quick    # small sizes, one round (a few minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.contenders import CONTENDERS
from benchmarks.report import update_docs, write_report

__all__ = ["main"]

FULL_SIZES = (10, 30, 100, 227, 1000)
QUICK_SIZES = (10, 30)
#: Contenders not run above a size, to keep the full run near 15 minutes (a synchronous upload
#: of 1 GB to the loopback S3 server takes about 20 s per save).
MAX_MB = {"ckpt_sync_s3": 227}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_s3(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """moto's S3 server on loopback, in a process of its own."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the moto S3 server did not start within 60 s")


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("KERAS_BACKEND", "tensorflow")
    env.update(TF_CPP_MIN_LOG_LEVEL="3", WANDB_MODE="offline", WANDB_SILENT="true",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_SESSION_TOKEN="testing", AWS_DEFAULT_REGION="us-east-1",
               PYTHONDONTWRITEBYTECODE="1")
    return env


def _worker(args: list[str], env: dict[str, str], timeout: float) -> tuple[list[dict], str | None]:
    """Run one worker process; return its records and, if it failed, why."""
    fd, out = tempfile.mkstemp(suffix=".jsonl")
    os.close(fd)
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", *args, "--out", out],
                              env=env, capture_output=True, text=True, timeout=timeout)
        error = None
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            error = lines[-1] if lines else f"exit status {proc.returncode}"
    except subprocess.TimeoutExpired:
        error = f"did not finish within {timeout:.0f} s"
    with open(out, encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    os.remove(out)
    return records, error


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and one round")
    parser.add_argument("--sizes", type=lambda s: [float(v) for v in s.split(",")], default=None,
                        help="state sizes in MB (default: 10,30,100,227,1000)")
    parser.add_argument("--contenders", type=lambda s: s.split(","), default=list(CONTENDERS),
                        help=f"any of: {','.join(CONTENDERS)}")
    parser.add_argument("--epochs", type=int, default=None, help="saves per fit in the sweep (default 3)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the fitcost scenario (default 7)")
    parser.add_argument("--out", default=RESULTS, help="output folder (default benchmarks/results)")
    return parser


def _plan(args: argparse.Namespace) -> dict[str, Any]:
    unknown = sorted(set(args.contenders) - set(CONTENDERS))
    if unknown:
        raise SystemExit(f"--contenders: unknown {', '.join(unknown)}; allowed: {', '.join(CONTENDERS)}")
    return {
        "sizes": args.sizes or list(QUICK_SIZES if args.quick else FULL_SIZES),
        "epochs": args.epochs or 3,
        "rounds": args.rounds or (1 if args.quick else 7),
        "sweep_steps": 4 if args.quick else 6,
        "steps": 60 if args.quick else 600,
        "contenders": args.contenders,
        "limits_mb": 30 if args.quick else 227,
        "limits_epochs": 3 if args.quick else 5,
        "limits_rounds": 1 if args.quick else 3,
    }


def main(argv: list[str] | None = None) -> None:
    """Run every scenario and write the results."""
    args = _parser().parse_args(argv)
    plan = _plan(args)
    env = _environment()
    started = time.time()
    server, endpoint = (None, None)
    if any("s3" in name for name in plan["contenders"]):
        server, endpoint = _start_s3(env)
    records: list[dict] = []
    unavailable: dict[str, str] = {}
    try:
        s3 = ["--s3-endpoint", endpoint] if endpoint else []
        for name in plan["contenders"]:
            print(f"sweep: {name} ...", flush=True)
            sizes = ",".join(f"{s:g}" for s in plan["sizes"] if s <= MAX_MB.get(name, s))
            got, error = _worker(["sweep", "--contender", name, "--sizes", sizes,
                                  "--epochs", str(plan["epochs"]), "--steps", str(plan["sweep_steps"]), *s3],
                                 env, timeout=900)
            records += got
            if error:
                unavailable[name] = error
                print(f"  {name}: {error}", flush=True)
        print("limits ...", flush=True)
        got, error = _worker(["limits", "--size", str(plan["limits_mb"]), "--epochs", str(plan["limits_epochs"]),
                              "--rounds", str(plan["limits_rounds"]), *s3], env, timeout=900)
        records += got
        if error:
            unavailable["limits"] = error
            print(f"  limits: {error}", flush=True)
        print("fitcost ...", flush=True)
        usable = [n for n in plan["contenders"] if n not in unavailable or n == "none"]
        got, error = _worker(["fitcost", "--contenders", ",".join(usable), "--rounds", str(plan["rounds"]),
                              "--steps", str(plan["steps"]), *s3], env, timeout=900)
        records += got
        if error:
            unavailable["fitcost"] = error
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    meta = {
        "quick": args.quick, "plan": plan, "seconds": round(time.time() - started, 1),
        "keras_backend": env["KERAS_BACKEND"], "python": platform.python_version(),
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}", "unavailable": unavailable,
        "versions": _versions(),
    }
    paths = write_report(records, meta, args.out)
    if not args.quick and os.path.abspath(args.out) == RESULTS:
        paths += update_docs(os.path.join(RESULTS, "results.md"), paths[2])
    print("\n".join(f"wrote {p}" for p in paths))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in ("keras", "tensorflow-cpu", "jax", "torch", "wandb", "orbax-checkpoint", "s3fs", "moto", "ckptcore"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return found


if __name__ == "__main__":
    main()
