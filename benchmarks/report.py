"""Turn benchmark records into ``results.json``, ``results.md`` and ``blocked_vs_size.png``."""

from __future__ import annotations

import json
import os
import statistics
from typing import Any

from benchmarks.contenders import LABELS

__all__ = ["DOCS_PAGE", "keeps_up", "main", "memory_ratios", "targets", "update_docs", "write_report"]

TARGET_MB = 227  # the target model: 227 MB of weights and Adam state
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS_PAGE = os.path.join(_ROOT, "docs", "benchmarks.md")
DOCS_PLOT = os.path.join(_ROOT, "docs", "images", "benchmarks-blocked-vs-size.png")
_START, _END = "<!-- results:start -->", "<!-- results:end -->"


def _sweep(records: list[dict], name: str) -> dict[float, dict]:
    return {r["target_mb"]: r for r in records if r["scenario"] == "sweep" and r["contender"] == name}


def _fitcost(records: list[dict], name: str) -> list[dict]:
    return [r for r in records if r["scenario"] == "fitcost" and r["contender"] == name]


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b in (None, 0) else a / b


def _closest(rows: dict[float, dict], size: float) -> dict | None:
    return rows[min(rows, key=lambda s: abs(s - size))] if rows else None


def _target(name: str, value: float | None, limit: float, how: str, at_least: bool = False) -> dict[str, Any]:
    met = value is not None and (value >= limit if at_least else value <= limit)
    return {"target": name, "value": value, "limit": limit, "at_least": at_least, "met": met, "how": how}


def _b2b(records: list[dict], name: str, key: str = "blocked_s") -> float | None:
    """Median over every back-to-back save of ``name`` (all rounds, the first save of each fit out)."""
    values = [v for r in records if r["scenario"] == "b2b" and r["contender"] == name for v in r[key][1:]]
    return statistics.median(values) if values else None


def keeps_up(records: list[dict]) -> tuple[float | None, float | None, int]:
    """The keeps-up fits: median time blocked over the saves made while the writer was idle
    (the first save of each fit out: it allocates the host buffers), the median reused-buffer
    copy of the same rounds (sliced over the cores as the snapshot copies, where measured),
    and how many saves counted."""
    runs = [r for r in records if r["scenario"] == "keeps_up"]
    blocked = [b for r in runs for i, (b, idle) in enumerate(zip(r["blocked_s"], r["writer_idle"])) if i and idle]
    reuse = [v for r in runs for v in r.get("host_copy_parallel_s") or r["host_copy_reuse_s"]]
    return (statistics.median(blocked) if blocked else None, statistics.median(reuse) if reuse else None,
            len(blocked))


def _one_thread_copy(records: list[dict]) -> float | None:
    values = [v for r in records if r["scenario"] == "keeps_up" for v in r["host_copy_reuse_s"]]
    return statistics.median(values) if values else None


def _reference(records: list[dict]) -> dict[str, Any]:
    return next((r for r in records if r["scenario"] == "limits"), {})


def _raw(ref: dict[str, Any]) -> float | None:
    """The median raw write + fsync over every sample of the run (single saves and rounds)."""
    values = ref.get("single_raw_write_fsync_s", []) + ref.get("raw_write_fsync_s", [])
    return statistics.median(values) if values else ref.get("raw_write_fsync_median_s")


def _sustained(ref: dict[str, Any]) -> float | None:
    """The median raw write + fsync in a row into kept files (the back-to-back reference); runs
    from before it existed fall back to the kept files written one at a time."""
    return ref.get("raw_write_fsync_b2b_median_s") or ref.get("raw_write_fsync_kept_median_s") or _raw(ref)


def _limit_targets(records: list[dict]) -> list[dict[str, Any]]:
    ref = _reference(records)
    raw = _raw(ref)
    sustained = _sustained(ref)
    size = f"{ref['state_mb']:.0f} MB model, {ref['file_mb']:.0f} MB file" if ref else "model"
    sync = ref.get("single_ckpt_sync_median_s") or _b2b(records, "ckpt_sync")
    keras_ = ref.get("single_keras_save_median_s") or _b2b(records, "keras")
    steps = ref.get("steps_per_epoch", 2)
    blocked_idle, reuse, counted = keeps_up(records)
    ku_steps = next((r["steps_per_epoch"] for r in records if r["scenario"] == "keeps_up"), None)
    keeps_up_how = (f"keeps-up fits ({ku_steps} steps per epoch): median time in on_epoch_end over the {counted} "
                    "saves made while the writer was idle (the first of each fit, which allocates the host buffers, "
                    "out), against a copy of every variable into arrays allocated once, sliced over the cores as the "
                    "snapshot copies, measured just after each fit (against one thread's np.copyto: "
                    f"{_fmt(_ratio(blocked_idle, _one_thread_copy(records)), '.2f')})")
    if ku_steps is None:  # a run from before the keeps-up fits: the sweep's saves
        at = {k: _closest(_sweep(records, k), TARGET_MB) for k in ("ckpt_async", "none")}
        blocked_idle = at["ckpt_async"] and at["ckpt_async"]["blocked_median_s"]
        reuse = at["none"] and at["none"].get("host_copy_reuse_median_s")
        keeps_up_how = ("sweep, 6 steps per epoch: np.copyto of every variable into arrays allocated once, against "
                        "ckptcore async's median time in on_epoch_end")
    elif not counted:
        keeps_up_how = f"keeps-up fits ({ku_steps} steps per epoch): the writer was never idle at a save"
    alone = ref.get("writer_alone_ratio_median")
    return [
        _target("sync .keras save vs raw write+fsync of the same bytes", _ratio(sync, raw), 1.15,
                f"ckptcore async_save=False, median time in on_epoch_end (write, hash, fsync, rename, manifest) "
                f"against os.write + os.fsync of the .keras file's bytes: single saves from a settled disk, "
                f"interleaved, one process, {size}"),
        _target("sync .keras save vs keras model.save", _ratio(sync, keras_), 1.0,
                "the same single saves: Keras's model.save (no fsync)"),
        _target("writer sustained throughput vs raw write+fsync", alone, 0.85,
                "the writer alone: non-blocking saves with no training between them, each handed over and "
                "waited for, alternating with as many raw write+fsync of the same bytes, files kept, the disk "
                "never resting; median raw time / median time of the writer per save (Committer.save) in each "
                "round, median of the rounds",
                at_least=True),
        _target("the same, inside fits (the writer shares the cores with training)",
                _ratio(sustained, _b2b(records, "ckpt_async", "writer_s")), 0.85,
                f"raw time / the writer's median time per save, saves back to back ({steps} steps per epoch); "
                "raw: as many write+fsync in a row into kept files, just before and after each round's fits",
                at_least=True),
        _target("back-to-back blocked per save vs keras ModelCheckpoint",
                _ratio(_b2b(records, "ckpt_async"), keras_), 0.35,
                f"{steps} steps per epoch, a save at each: the writer never rests, back-pressure included "
                "(Keras does not fsync: its saves end in the page cache)"),
        _target("blocked per save (writer keeping up) vs copy into reused host buffers",
                _ratio(blocked_idle, reuse), 1.3, keeps_up_how),
    ]


def _save_targets(records: list[dict]) -> list[dict[str, Any]]:
    at = {k: _closest(_sweep(records, k), TARGET_MB) for k in ("ckpt_async", "keras", "none")}
    ours, keras_, none = at["ckpt_async"], at["keras"], at["none"]
    size = f"{ours['state_mb']:.0f} MB model" if ours else "model"
    blocked = ours and ours["blocked_median_s"]
    snap = ours and ours.get("snapshot_median_s")
    theirs = keras_ and keras_["blocked_median_s"]
    return [
        _target("blocked per save vs keras ModelCheckpoint", _ratio(blocked, theirs), 0.15,
                f"median time in on_epoch_end (host snapshot + any wait for a free writer slot), .keras, {size}"),
        _target("host snapshot alone vs keras ModelCheckpoint", _ratio(snap, theirs), 0.15,
                f"median time taking the snapshot, {size}"),
        _target("blocked per save vs a plain host copy", _ratio(blocked, none and none.get("host_copy_median_s")),
                1.5, f"plain copy = variable.numpy() of every weight and optimizer variable, {size}"),
    ]


def _fit_targets(records: list[dict]) -> list[dict[str, Any]]:
    fits = {n: [r["fit_s"] for r in _fitcost(records, n)] for n in ("none", "ckpt_async", "ckpt_async_s3")}
    med = {n: statistics.median(v) if v else None for n, v in fits.items()}
    best = {n: min(v) if v else None for n, v in fits.items()}
    cpu = {n: statistics.median([r["cpu_s"] for r in _fitcost(records, n)] or [0]) or None
           for n in ("none", "ckpt_async")}
    hooks = [sum(r["blocked_s"]) for r in _fitcost(records, "ckpt_async")]
    share = _ratio(statistics.median(hooks), med["none"]) if hooks else None
    s3 = _closest(_sweep(records, "ckpt_async_s3"), TARGET_MB)
    local = _closest(_sweep(records, "ckpt_async"), TARGET_MB)
    ref = _reference(records)
    put = ref.get("s3_put_median_s")
    # Every save of the fit uploaded at the server's raw speed, and nothing else: a floor for
    # any uploader (the fit cannot end before its last upload does). The raw put is of the
    # limits model's file: scaled to the sweep model's size.
    scale = local and ref.get("state_mb") and local["state_mb"] / ref["state_mb"]
    puts_only = _ratio(put and scale and put * scale * local["epochs"], local and local["fit_s"])
    return [
        _target("fit wall time, save every epoch, vs no callback", _ratio(med["ckpt_async"], med["none"]), 1.02,
                "median over rounds; small model, many batches per epoch (noisy: see the rounds)"),
        _target("the same, best round vs best round", _ratio(best["ckpt_async"], best["none"]), 1.02,
                "fastest of the rounds of each"),
        _target("training-thread time in the save hooks, share of the fit", share and 1 + share, 1.02,
                "1 + (time blocked in all saves of a fit) / (fit without callback); excludes CPU the writer takes"),
        _target("process CPU time of the fit vs no callback", _ratio(cpu["ckpt_async"], cpu["none"]), 1.02,
                "median over rounds of user + system time of the process (training, writer and all)"),
        _target("fit wall time, every epoch to S3 vs local only", _ratio(med["ckpt_async_s3"], med["ckpt_async"]),
                1.10, "the same small-model fits; S3 = moto's server on loopback"),
        _target(f"fit wall time to S3 vs local, {local['state_mb']:.0f} MB model" if local else "S3 vs local",
                _ratio(s3 and s3["fit_s"], local and local["fit_s"]), 1.5,
                "sweep fits, async saves every epoch (6 steps): multipart uploads in parallel parts to the "
                "loopback server, whose own speed is in the references table; its raw puts of every save "
                f"of the fit, one after the other, take {_fmt(puts_only, '.2f')}x the local fit's time"),
    ]


def memory_ratios(records: list[dict], baseline: str = "ckpt_sync") -> dict[float, float]:
    """Per size: (peak RSS with async saves - peak RSS of ``baseline``) / state size.

    Against ``ckpt_sync`` (the same library and writers, no pending save) this is what a
    pending save costs; against ``none`` it also counts what loading ckptcore's writers
    (h5py, threads) costs once per process.
    """
    ours, base = _sweep(records, "ckpt_async"), _sweep(records, baseline)
    return {mb: (row["peak_rss_mb"] - base[mb]["peak_rss_mb"]) / row["state_mb"]
            for mb, row in sorted(ours.items())
            if mb in base and row["peak_rss_mb"] and base[mb]["peak_rss_mb"]}


def targets(records: list[dict]) -> list[dict[str, Any]]:
    """The performance targets as measured ratios, each with its limit and whether it is met."""
    ratios = memory_ratios(records) or memory_ratios(records, "none")
    worst = max(ratios.values()) if ratios else None
    memory = _target("extra peak memory per pending save, in snapshots of the state", worst, 1.0,
                     "(peak RSS ckptcore async - peak RSS ckptcore sync, which holds no pending save) / state "
                     "size, max_pending=1, worst of every size; against no callback in the peak RSS table")
    return [*_save_targets(records), *_limit_targets(records), *_fit_targets(records), memory]


def _references_table(records: list[dict]) -> list[str]:
    """The physical references of the limits scenario, and each contender against them."""
    ref = _reference(records)
    if not ref:
        return []
    mb = ref["file_mb"]
    copy, put, b3, sha, crc = (ref.get(k) for k in ("memory_copy_median_s", "s3_put_median_s", "blake3_median_s",
                                                    "sha256_median_s", "crc32_median_s"))
    raw = _raw(ref)
    kept = ref.get("raw_write_fsync_kept_median_s") or raw
    sustained = _sustained(ref)
    rows = [("memory copy into a reused buffer", copy, None),
            ("raw write + fsync, file removed after (its blocks reused)", raw, None),
            ("raw write + fsync, files kept (fresh blocks each time), one at a time from a settled disk", kept, None),
            ("raw write + fsync, files kept, in a row (the disk's sustained rate, as in the fits)", sustained, None),
            ("BLAKE3 of the bytes, one core (the digest ckptcore records)", b3, None),
            ("SHA-256 of the bytes, one core (hashlib; older manifests' digest)", sha, None),
            ("CRC-32 of the bytes, one core (zlib; every zip member has one)", crc, None),
            ("raw S3 upload (s3fs put_file, loopback moto)", put, None),
            ("single save: keras model.save (no fsync)", ref.get("single_keras_save_median_s"), raw),
            ("single save: ckptcore sync (write, hash, fsync, rename, manifest)",
             ref.get("single_ckpt_sync_median_s"), raw)]
    blocked_idle, reuse, _counted = keeps_up(records)
    alone, alone_raw = ref.get("writer_alone_s"), ref.get("writer_alone_raw_s")
    rows += [("host copy of every variable into reused arrays, one thread (np.copyto), after each keeps-up fit",
              _one_thread_copy(records), None),
             ("the same copy sliced over the cores (as the snapshot copies)", reuse, None),
             ("keeps up: ckptcore async, blocked per save while the writer was idle", blocked_idle, reuse),
             ("raw write + fsync, files kept, alternating with the writer-alone saves",
              statistics.median(alone_raw) if alone_raw else None, None),
             ("the writer alone, alternating with raw writes: writer per save",
              statistics.median(alone) if alone else None,
              statistics.median(alone_raw) if alone_raw else sustained)]
    rows += [(f"back to back, {LABELS.get(n, n)}: {what}", _b2b(records, n, key), base)
             for n, key, what, base in (("keras", "blocked_s", "save", sustained),
                                        ("ckpt_sync", "blocked_s", "save", sustained),
                                        ("ckpt_async", "writer_s", "writer per save", sustained),
                                        ("ckpt_async", "blocked_s", "blocked per save", copy),
                                        ("ckpt_async_s3", "writer_s", "writer per save", put))]
    lines = [f"### Physical references and back-to-back saves ({mb:.0f} MB file, {ref['steps_per_epoch']} steps "
             f"per epoch, {ref['rounds']} rounds, one process)", "",
             "| what | median (ms) | MB/s | vs its reference |", "|---|---|---|---|"]
    for label, seconds, base in rows:
        if seconds is None:
            continue
        versus = "reference" if base is None else _fmt(_ratio(seconds, base), ".2f") + "×"
        lines.append(f"| {label} | {seconds * 1e3:.0f} | {mb / seconds:.0f} | {versus} |")
    return ["", *lines, "", "References: a single save against raw write + fsync into reused blocks (ckptcore keeps "
            "the last checkpoint only, so each save reuses the blocks of the one before, as the raw "
            "write and Keras's removed files do), a save inside a fit against as many raw write + fsync "
            "in a row into kept files, measured just before and after each round's fits, the time blocked "
            "against the memory copy (the keeps-up saves against the copy of every variable into reused buffers, "
            "sliced over up to four cores as the snapshot copies), "
            "the writer alone against the raw writes it alternated with, an S3 upload against the raw S3 "
            "upload. Single saves run one at a time from a settled disk; the back-to-back rows are "
            "saves inside fits with 2 steps per epoch, every checkpoint kept. "
            "A hashed save cannot beat the slower of raw write + fsync and the digest of its bytes."]


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _grid(records: list[dict], names: list[str], sizes: list[float], cell) -> list[str]:
    head = "| contender | " + " | ".join(f"{s:g} MB" for s in sizes) + " |"
    lines = [head, "|" + "---|" * (len(sizes) + 1)]
    for name in names:
        rows = _sweep(records, name)
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cell(rows.get(s)) for s in sizes) + " |")
    return lines


def _markdown(records: list[dict], meta: dict) -> str:
    names = [n for n in LABELS if any(r["contender"] == n for r in records)]
    sizes = sorted({r["target_mb"] for r in records if r["scenario"] == "sweep"})
    none = _sweep(records, "none")
    state = " · ".join(f"{s:g} → {none[s]['state_mb']:.0f} MB" for s in sizes if s in none)
    out = [f"Keras backend: {meta['keras_backend']}; {meta['machine']}; "
           f"versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}.", ""]
    out += ["### Targets", "", "| target | measured | limit | met | how |", "|---|---|---|---|---|"]
    for t in targets(records):
        out.append(f"| {t['target']} | {_fmt(t['value'], '.3f')} | {'≥' if t.get('at_least') else '≤'} "
                   f"{t['limit']:g} | {'yes' if t['met'] else 'no'} | {t['how']} |")
    out += _references_table(records)
    out += ["", f"### Training-thread time blocked per save (median, ms); state sizes: {state}", ""]
    out += _grid(records, names[1:], sizes, lambda r: _fmt(r and r["blocked_median_s"] * 1e3, ".0f"))
    for key, label in (("host_copy_median_s", "plain host copy, fresh arrays (reference)"),
                       ("host_copy_reuse_median_s", "host copy into reused arrays (floor)")):
        out.append(f"| {label} | " + " | ".join(
            _fmt(none.get(s, {}).get(key) and none[s][key] * 1e3, ".0f") for s in sizes) + " |")
    out += ["", "Of which ckptcore's host snapshot (median, ms; the rest is waiting for a free writer "
            "slot, i.e. back-pressure, plus the engine's own work):", ""]
    out += _grid(records, [n for n in names if n.startswith("ckpt_async")], sizes,
                 lambda r: _fmt(r and r.get("snapshot_median_s") and r["snapshot_median_s"] * 1e3, ".0f"))
    out += ["", f"### `fit` wall time (s), {meta['plan']['epochs']} epochs of "
            f"{meta['plan']['sweep_steps']} steps, a save at each", ""]
    out += _grid(records, names, sizes, lambda r: _fmt(r and r["fit_s"], ".2f"))
    out += ["", "### Time in `on_train_end` (s): pending saves finished", ""]
    out += _grid(records, names[1:], sizes, lambda r: _fmt(r and r["train_end_s"], ".2f"))
    out += ["", "### Peak RSS during `fit` (MB)", ""]
    out += _grid(records, names, sizes, lambda r: _fmt(r and r["peak_rss_mb"], ".0f"))
    for baseline, label in (("ckpt_sync", "ckptcore sync (a pending save's cost)"),
                            ("none", "no callback (with the writers' libraries loaded once)")):
        ratios = memory_ratios(records, baseline)
        out += ["", f"Extra peak RSS of ckptcore async over {label}, in snapshots of the state: " + ", ".join(
            f"{mb:g} MB: {r:.2f}" for mb, r in ratios.items()) + "."]
    out += ["", "### Checkpoints complete when `fit` returned", ""]
    out += _grid(records, names[1:], sizes, lambda r: f"{r['files_complete']}/{r['files_expected']}" if r else "n/a")
    out += ["", _fitcost_table(records, names, meta)]
    if meta["unavailable"]:
        out += ["", "### Not measured", ""] + [f"- {k}: {v}" for k, v in meta["unavailable"].items()]
    return "\n".join(out) + "\n"


def _fitcost_table(records: list[dict], names: list[str], meta: dict) -> str:
    rows = [r for r in records if r["scenario"] == "fitcost"]
    if not rows:
        return ""
    none = [r["fit_s"] for r in _fitcost(records, "none")] or [float("nan")]
    base, base_best = statistics.median(none), min(none)
    lines = [f"### Small model ({rows[0]['state_mb']:.1f} MB state), {rows[0]['steps_per_epoch']} batches "
             f"per epoch, {rows[0]['epochs']} epochs, {meta['plan']['rounds']} rounds", "",
             "| contender | fit (s, median) | vs no callback (median) | vs no callback (best round) | "
             "CPU time vs no callback (median) | blocked per save (ms, median) | all rounds (s) |",
             "|---|---|---|---|---|---|---|"]
    cpu_base = statistics.median([r["cpu_s"] for r in _fitcost(records, "none")] or [float("nan")])
    for name in names:
        fits = [r["fit_s"] for r in _fitcost(records, name)]
        if not fits:
            continue
        blocked = [b for r in _fitcost(records, name) for b in r["blocked_s"]]
        med = statistics.median(fits)
        cpu = statistics.median([r["cpu_s"] for r in _fitcost(records, name)])
        lines.append(f"| {LABELS.get(name, name)} | {med:.2f} | {med / base:.3f} | {min(fits) / base_best:.3f} | "
                     f"{cpu / cpu_base:.3f} | "
                     f"{_fmt(statistics.median(blocked) * 1e3 if blocked else None, '.1f')} | "
                     f"{' '.join(f'{f:.2f}' for f in fits)} |")
    return "\n".join(lines)


def _plot(records: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bars) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [3, 2]})
    _plot_targets(bars, records)
    for name, label in LABELS.items():
        rows = sorted(_sweep(records, name).values(), key=lambda r: r["state_mb"])
        points = [(r["state_mb"], r["blocked_median_s"]) for r in rows if r["blocked_median_s"] > 0]
        if name != "none" and points:
            ax.plot(*zip(*points), marker="o", label=label,
                    linestyle="-" if name.startswith("ckpt_async") else "--")
    snaps = sorted(_sweep(records, "ckpt_async").values(), key=lambda r: r["state_mb"])
    points = [(r["state_mb"], r["snapshot_median_s"]) for r in snaps if r.get("snapshot_median_s")]
    if points:
        ax.plot(*zip(*points), color="purple", linestyle=":", marker=".",
                label="ckptcore async: the host snapshot alone")
    copy = sorted(_sweep(records, "none").values(), key=lambda r: r["state_mb"])
    if copy:
        ax.plot([r["state_mb"] for r in copy], [r["host_copy_median_s"] for r in copy], color="black",
                linestyle=":", marker="x", label="plain host copy, fresh arrays (reference)")
        ax.plot([r["state_mb"] for r in copy], [r["host_copy_reuse_median_s"] for r in copy], color="grey",
                linestyle=":", marker="+", label="host copy into reused arrays (floor)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("model + optimizer state (MB)")
    ax.set_ylabel("training thread blocked per save (s, median)")
    ax.set_title("What one checkpoint save costs the training thread")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_targets(ax: Any, records: list[dict]) -> None:
    """Each target's measured ratio as a bar, its limit as a tick; green when met."""
    rows = [t for t in targets(records) if t["value"] is not None]
    names = [t["target"] for t in rows][::-1]
    values = [t["value"] for t in rows][::-1]
    ax.barh(names, values, color=["tab:green" if t["met"] else "tab:red" for t in rows][::-1])
    ax.scatter([t["limit"] for t in rows][::-1], names, marker="|", s=300, color="black", zorder=3,
               label="limit (≥ for throughput, else ≤)")
    ax.set_xscale("log")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("measured ratio (log)")
    ax.set_title("Targets: measured against the physical references")
    ax.legend(fontsize=7, loc="lower right")


def write_report(records: list[dict], meta: dict, folder: str) -> list[str]:
    """Write the JSON, markdown and PNG files; return their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, n) for n in ("results.json", "results.md", "blocked_vs_size.png")]
    with open(paths[0], "w", encoding="utf-8") as fh:
        json.dump({"meta": meta, "targets": targets(records), "records": records}, fh, indent=1)
    with open(paths[1], "w", encoding="utf-8") as fh:
        fh.write(_markdown(records, meta))
    _plot(records, paths[2])
    return paths


def update_docs(results_md: str, plot: str) -> list[str]:
    """Put the results tables and the plot into docs/benchmarks.md; return the paths written."""
    import shutil

    with open(results_md, encoding="utf-8") as fh:
        tables = fh.read().replace("### ", "#### ")
    with open(DOCS_PAGE, encoding="utf-8") as fh:
        page = fh.read()
    if _START not in page or _END not in page:
        return []
    os.makedirs(os.path.dirname(DOCS_PLOT), exist_ok=True)
    shutil.copyfile(plot, DOCS_PLOT)
    body = (f"{_START}\n![Time blocked per save against state size](images/{os.path.basename(DOCS_PLOT)})\n\n"
            f"{tables}{_END}")
    head, rest = page.split(_START, 1)
    page = head + body + rest.split(_END, 1)[1]
    with open(DOCS_PAGE, "w", encoding="utf-8") as fh:
        fh.write(page)
    return [DOCS_PAGE, DOCS_PLOT]


def main(argv: list[str] | None = None) -> None:
    """Render the tables, the plot and the docs section again from a results.json."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    source = args[0] if args else os.path.join(_ROOT, "benchmarks", "results", "results.json")
    with open(source, encoding="utf-8") as fh:
        data = json.load(fh)
    folder = os.path.dirname(os.path.abspath(source))
    paths = write_report(data["records"], data["meta"], folder)
    if os.path.abspath(folder) == os.path.join(_ROOT, "benchmarks", "results") and not data["meta"]["quick"]:
        paths += update_docs(paths[1], paths[2])
    print("\n".join(f"wrote {p}" for p in paths))


if __name__ == "__main__":
    main()
