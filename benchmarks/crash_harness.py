"""Kill processes at random moments while they save or prune; count what each kill ruined.

Each trial starts a real process, waits until it reaches the moment worth killing (its first
checkpoints are written, or a prune is about to start), lets it run a random while more, then
``SIGKILL``s it: no handler runs, no buffer is flushed, nothing is cleaned up. Then every
checkpoint root it used is checked (:mod:`benchmarks.crash_check`): a final-name checkpoint the
manifest does not account for, a manifest entry the disk does not hold, a checkpoint that does
not load, a lost best. A trial with any of them is a *failed* kill.

Scenarios (:mod:`benchmarks.crash_children`): NumPy ``Checkpointer`` loops saving files or
directories, synchronously or with ``async_save``, each with a fixed-name best
(``save_best_only``, ``resume=True``) beside templated names (``keep_last``); ``ckptcore prune
--keep-last 1`` of file and directory checkpoints; Keras ``fit`` with ckptcore's
``ModelCheckpoint`` (``best.keras`` and ``w-NNNN.weights.h5``), sync and async; and, to compare,
``keras.callbacks.ModelCheckpoint`` (``keras-native``, not in the default campaign).

A training trial restarts in the root the previous kill left, as a restarted job would (after
a failed kill the root starts afresh, so each kill counts alone); a prune trial builds a fresh
root. Processes are forked from a ``multiprocessing`` fork server that imported NumPy, ckptcore
(and Keras) once, so a trial costs the work, not the imports.

Run ``python -m benchmarks.crash_harness`` (about ten minutes on two cores; ``--kills N`` scales
the campaign, ``--seed``, ``--scenarios``, ``--json PATH``); it prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.crash_check import KINDS, check_root
from benchmarks.crash_children import BEST_NAMES, TARGETS, keras_model, run

__all__ = ["CAMPAIGN", "SCENARIOS", "Summary", "context", "main", "plan", "run_scenario", "verify"]

SCENARIOS = tuple(TARGETS)
#: The default campaign: scenario -> share of the kills (the Keras share starts slowest).
CAMPAIGN = {"file-sync": 36, "file-async": 36, "dir-sync": 30, "dir-async": 30, "prune": 44,
            "keras-sync": 12, "keras-async": 12}
#: Seconds after the ready moment within which the kill comes, per scenario.
WINDOWS = {"prune": 0.08}
DEFAULT_WINDOW = 1.5


def verify(root: str) -> dict[str, Any]:
    """Check every checkpoint root directly below ``root`` (run in a fork-server child).

    Returns:
        ``{"roots": n, "files": m, "leftovers": k, "problems": {kind: [...]}}``; hidden names
        (temporary files, ckptcore's own directory) are leftovers, never final names.
    """
    problems: dict[str, list[str]] = {kind: [] for kind in KINDS}
    files = leftovers = roots = 0
    models: dict[str, Any] = {}
    subs = sorted(os.listdir(root)) if os.path.isdir(root) else []
    for sub in subs:
        path = os.path.join(root, sub)
        if not os.path.isdir(path):
            continue
        roots += 1
        names = os.listdir(path)
        leftovers += sum(n.startswith(".") for n in names)
        files += sum(not n.startswith(".") and not n.startswith("manifest") for n in names)
        found = check_root(path, BEST_NAMES, make_model=lambda: keras_model(0), models=models)
        for kind, lines in found.items():
            problems[kind] += [f"{sub}/{line}" for line in lines]
    return {"roots": roots, "files": files, "leftovers": leftovers, "problems": problems}


@dataclass
class Summary:
    """What the kills of one scenario left behind."""

    scenario: str
    kills: int = 0
    failed: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: {kind: 0 for kind in KINDS})
    files_checked: int = 0
    leftovers: int = 0
    not_ready: int = 0
    mid_prune: int = 0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)


def context(keras: bool) -> Any:
    """The fork-server context: NumPy, ckptcore and, if asked, Keras are imported once.

    Ask for Keras on the first call if any Keras scenario will run: the preload list only
    counts until the fork server starts.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    ctx = multiprocessing.get_context("forkserver")
    preload = ["numpy", "ckptcore", "ckptcore.cli", "benchmarks.crash_children", "benchmarks.crash_check"]
    if keras:
        preload += ["keras", "ckptcore.adapters.keras"]
    if not getattr(context, "started", False):
        ctx.set_forkserver_preload(preload)
        context.started = True  # type: ignore[attr-defined]
    return ctx


def _one_kill(ctx: Any, pool: Any, scenario: str, root: str, rng: random.Random,
              ready_timeout: float) -> tuple[bool, bool, dict[str, Any]]:
    ready = ctx.Event()
    proc = ctx.Process(target=run, args=(scenario, root, ready, rng.randrange(2**31)), daemon=True)
    proc.start()
    deadline = time.monotonic() + ready_timeout
    while not (became_ready := ready.wait(0.05)) and proc.is_alive() and time.monotonic() < deadline:
        pass
    if became_ready:
        time.sleep(rng.uniform(0.0, WINDOWS.get(scenario, DEFAULT_WINDOW)))
    mid = ready.is_set()  # prune: still pruning when killed
    proc.kill()  # SIGKILL
    proc.join()
    return became_ready, mid, pool.apply(verify, (root,))


def run_scenario(scenario: str, kills: int, seed: int = 0, workdir: str | None = None,
                 ready_timeout: float = 120.0) -> Summary:
    """Kill ``kills`` processes of ``scenario``; check the roots after each kill.

    Args:
        scenario: One of :data:`SCENARIOS`.
        kills: How many processes to kill.
        seed: Seeds the kill moments and the processes.
        workdir: Where the roots go (a temporary directory by default).
        ready_timeout: Seconds to wait for a process to reach its ready moment.
    """
    if scenario not in TARGETS:
        raise ValueError(f"scenario: got {scenario!r}; allowed: {', '.join(SCENARIOS)}")
    ctx = context(keras=TARGETS[scenario][2])
    rng = random.Random(f"{seed}-{scenario}")
    summary = Summary(scenario)
    start = time.perf_counter()
    base = tempfile.mkdtemp(prefix=f"crash-{scenario}-", dir=workdir)
    try:
        with ctx.Pool(1) as pool:
            for trial in range(kills):
                root = os.path.join(base, f"t{trial}" if scenario == "prune" else "root")
                ready, mid, outcome = _one_kill(ctx, pool, scenario, root, rng, ready_timeout)
                _count(summary, ready, mid, outcome)
                if any(outcome["problems"].values()) or scenario == "prune":
                    shutil.rmtree(root, ignore_errors=True)  # the next trial starts clean
    finally:
        shutil.rmtree(base, ignore_errors=True)
    summary.seconds = round(time.perf_counter() - start, 1)
    return summary


def _count(summary: Summary, ready: bool, mid: bool, outcome: dict[str, Any]) -> None:
    summary.kills += 1
    summary.not_ready += not ready
    summary.mid_prune += mid and summary.scenario == "prune"
    summary.files_checked += outcome["files"]
    summary.leftovers = max(summary.leftovers, outcome["leftovers"])
    problems = outcome["problems"]
    if any(problems.values()):
        summary.failed += 1
    for kind, lines in problems.items():
        summary.by_kind[kind] += bool(lines)
        if lines and sum(e.startswith(f"{kind}:") for e in summary.examples) < 2:
            summary.examples.append(f"{kind}: {lines[0]}")


def plan(kills: int, scenarios: list[str]) -> dict[str, int]:
    """Kills per scenario: the campaign's shares scaled to ``kills`` in all (at least 1 each)."""
    shares = {s: CAMPAIGN.get(s, 12) for s in scenarios}
    total = sum(shares.values())
    return {s: max(1, round(kills * share / total)) for s, share in shares.items()}


def _table(summaries: list[Summary]) -> str:
    head = ("| scenario | kills | failed kills | " + " | ".join(KINDS)
            + " | not ready | files checked | temporary files left (most at once) |")
    lines = [head, "|---|" + "---:|" * (len(KINDS) + 5)]
    for s in summaries:
        share = 100 * s.failed / max(s.kills, 1)
        kinds = " | ".join(str(s.by_kind[k]) for k in KINDS)
        lines.append(f"| {s.scenario} | {s.kills} | {s.failed} ({share:.0f}%) | {kinds} | {s.not_ready} | {s.files_checked} | {s.leftovers} |")
    total = sum(s.kills for s in summaries)
    failed = sum(s.failed for s in summaries)
    lines.append(f"| **all** | {total} | {failed} ({100 * failed / max(total, 1):.0f}%) | "
                 + " | ".join(str(sum(s.by_kind[k] for s in summaries)) for k in KINDS) + " | | | |")
    return "\n".join(lines)


def _record(args: argparse.Namespace, counts: dict[str, int], summaries: list[Summary]) -> dict[str, Any]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("ckptcore", "keras", "tensorflow-cpu", "tensorflow", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return {
        "kills": args.kills, "seed": args.seed, "plan": counts, "windows_s": {**{"default": DEFAULT_WINDOW}, **WINDOWS},
        "python": platform.python_version(), "cpus": os.cpu_count(), "versions": versions,
        "results": [asdict(s) for s in summaries],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(CAMPAIGN),
                        help="comma-separated, from: " + ", ".join(SCENARIOS))
    parser.add_argument("--kills", type=int, default=sum(CAMPAIGN.values()),
                        help="kills in all, shared out as the campaign's shares (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in TARGETS]
    if unknown or args.kills < 1:
        parser.error(f"--scenarios: unknown {unknown}; allowed: {', '.join(SCENARIOS)}" if unknown
                     else f"--kills: got {args.kills}; allowed: an int >= 1")
    context(keras=any(TARGETS[s][2] for s in scenarios))
    counts = plan(args.kills, scenarios)
    summaries = []
    for scenario, kills in counts.items():
        summary = run_scenario(scenario, kills, seed=args.seed)
        print(f"{scenario}: {summary.failed}/{summary.kills} failed, {summary.not_ready} not ready "
              f"({summary.seconds}s) {summary.examples[:2]}", file=sys.stderr, flush=True)
        summaries.append(summary)
    print(_table(summaries))
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(_record(args, counts, summaries), fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
