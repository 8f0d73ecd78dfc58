"""The ``ckptcore`` command on roots written by a real ``Checkpointer`` (NumPy writes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from s3_server import running_s3
from typer.testing import CliRunner

from ckptcore import MANIFEST_NAME, Checkpointer, Manifest
from ckptcore.cli import app, human_age, human_size
from ckptcore.digest import digest, tree_digest
from ckptcore.digest import bytes_digest

runner = CliRunner()
LOSSES = [0.9, 0.5, 0.7, 0.3, 0.6, 0.8]  # best at epoch 4


def train(filepath: str, losses=LOSSES, **options) -> Checkpointer:
    """Run a tiny 'training' loop that saves a NumPy array each epoch."""
    weights = np.zeros(8)

    def write(path: str) -> None:
        with open(path, "wb") as fh:  # a file object: np.save must not add '.npy'
            np.save(fh, weights)

    with Checkpointer(filepath, write=write, monitor="loss", **options) as ck:
        for epoch, loss in enumerate(losses):
            weights += 1.0
            ck.on_epoch_end(epoch, {"loss": loss, "acc": 1 - loss})
    return ck


def read_manifest(root) -> Manifest:
    return Manifest.from_json(open(os.path.join(root, *MANIFEST_NAME.split("/")), "rb").read())


def files(root) -> dict[str, bytes]:
    out = {}
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".ckptcore"]  # ckptcore's own files
        for name in names:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, root)] = open(full, "rb").read()
    return out


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def root(tmp_path) -> str:
    path = tmp_path / "run"
    train(str(path / "w-{epoch:02d}-{loss:.2f}.npy"))
    return str(path)


# -- ls -------------------------------------------------------------------------------------------
def test_ls_shows_every_checkpoint_with_its_columns(root):
    result = invoke("ls", root)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "name" in line)
    for column in ("name", "epoch", "step", "loss", "best", "size", "age"):
        assert column in header
    rows = [line for line in lines if ".npy" in line]
    assert [r.split()[1] for r in rows] == [f"w-{e:02d}-{v:.2f}.npy" for e, v in enumerate(LOSSES, 1)]
    best_rows = [r for r in rows if "*" in r]
    assert len(best_rows) == 1 and "w-04-0.30.npy" in best_rows[0]
    assert "192 B" in rows[0]  # np.save of 8 float64: 128-byte header + 64 bytes


def test_ls_json_matches_the_manifest(root):
    result = invoke("ls", root, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    manifest = read_manifest(root)
    assert [r["path"] for r in rows] == [e.path for e in manifest.entries]
    assert [r["digest"] for r in rows] == [e.digest for e in manifest.entries]
    assert [r["is_best"] for r in rows] == [e.path == "w-04-0.30.npy" for e in manifest.entries]
    assert rows[0]["location"] == os.path.join(root, rows[0]["path"])
    assert rows[0]["monitor_value"] == pytest.approx(0.9)
    assert rows[0]["age_seconds"] >= 0


def test_ls_accepts_the_manifest_path_itself(root):
    result = invoke("ls", os.path.join(root, MANIFEST_NAME), "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == len(LOSSES)


def test_ls_of_an_empty_manifest_says_so(tmp_path):
    (tmp_path / MANIFEST_NAME).parent.mkdir(parents=True)
    (tmp_path / MANIFEST_NAME).write_text(Manifest().to_json())
    result = invoke("ls", str(tmp_path))
    assert result.exit_code == 0
    assert "no checkpoints" in result.stdout


# -- best -----------------------------------------------------------------------------------------
def test_best_prints_the_best_path(tmp_path):
    ck = train(str(tmp_path / "run" / "w-{epoch:02d}.npy"))
    result = invoke("best", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == ck.best() == str(tmp_path / "run" / "w-04.npy")


def test_best_without_a_best_checkpoint_exits_1(tmp_path):
    weights = np.zeros(2)
    with Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=lambda p: np.save(open(p, "wb"), weights),
                      monitor="val_loss") as ck:
        ck.on_epoch_end(0, {"loss": 1.0})  # no val_loss: saved, never best
    result = invoke("best", str(tmp_path))
    assert result.exit_code == 1
    assert "no checkpoint is marked best" in result.stderr


# -- verify ---------------------------------------------------------------------------------------
def test_verify_passes_on_an_intact_root(root):
    result = invoke("verify", root)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("ok ") == len(LOSSES)
    assert f"{len(LOSSES)} ok" in result.stdout


def test_verify_names_each_corrupted_and_missing_file(root):
    with open(os.path.join(root, "w-02-0.50.npy"), "r+b") as fh:
        fh.seek(150)
        fh.write(b"\x7f")  # one flipped byte, same size
    os.remove(os.path.join(root, "w-05-0.60.npy"))
    result = invoke("verify", root)
    assert result.exit_code == 1
    bad = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(bad) == 2
    assert bad[0].startswith("BAD") and "w-02-0.50.npy" in bad[0] and "blake3" in bad[0]
    assert bad[1].startswith("MISSING") and "w-05-0.60.npy" in bad[1]
    assert "4 ok" in result.stdout and "1 bad" in result.stdout and "1 missing" in result.stdout


def test_verify_checks_directory_checkpoints_file_by_file(tmp_path):
    weights = np.arange(4.0)

    def write_dir(path: str) -> None:  # a SavedModel-like directory with a nested file
        os.makedirs(os.path.join(path, "variables"))
        np.save(open(os.path.join(path, "variables", "w.npy"), "wb"), weights)
        open(os.path.join(path, "saved_model.pb"), "wb").write(b"graph")

    with Checkpointer(str(tmp_path / "m-{epoch}"), write=write_dir, monitor="loss") as ck:
        ck.on_epoch_end(0, {"loss": 1.0})
        ck.on_epoch_end(1, {"loss": 0.5})
    assert invoke("verify", str(tmp_path)).exit_code == 0
    open(tmp_path / "m-2" / "variables" / "w.npy", "ab").write(b"x")
    result = invoke("verify", str(tmp_path))
    assert result.exit_code == 1
    assert "m-2" in result.stderr and "m-1" not in result.stderr


def test_tree_digest_matches_the_commit_digest(tmp_path):
    for rel, data in {"b": b"1", "a/x": b"22", "a/y/z": b"333", "c/d": b"", "aa": b"4"}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    pairs = [
        (os.path.relpath(os.path.join(d, n), tmp_path).replace(os.sep, "/"),
         lambda p=os.path.join(d, n): open(p, "rb"))
        for d, _dirs, names in os.walk(tmp_path) for n in names
    ]
    pairs.reverse()  # the order given must not matter
    assert tree_digest(pairs) == digest(str(tmp_path))


# -- prune ----------------------------------------------------------------------------------------
def test_prune_dry_run_deletes_nothing(root):
    before = files(root)
    result = invoke("prune", root, "--keep-last", "1", "--dry-run")
    assert result.exit_code == 0, result.output
    assert files(root) == before
    would = [line for line in result.stdout.splitlines() if line.startswith("would delete")]
    assert len(would) == 5 and "(dry run)" in result.stdout


def test_prune_keeps_last_and_best_and_updates_the_manifest(root):
    result = invoke("prune", root, "--keep-last", "2", "--keep-best", "2")
    assert result.exit_code == 0, result.output
    kept = {"w-02-0.50.npy", "w-04-0.30.npy", "w-05-0.60.npy", "w-06-0.80.npy"}
    assert set(files(root)) == kept
    manifest = read_manifest(root)
    assert {e.path for e in manifest.entries} == kept
    assert manifest.best().path == "w-04-0.30.npy"
    assert invoke("verify", root).exit_code == 0


def test_prune_deletes_only_what_the_manifest_lists(root):
    stray = {"notes.txt": b"mine", "w-99-0.01.npy": b"not from ckptcore", "sub/w-01-0.90.npy": b"x"}
    for rel, data in stray.items():
        os.makedirs(os.path.dirname(os.path.join(root, rel)) or root, exist_ok=True)
        open(os.path.join(root, rel), "wb").write(data)
    result = invoke("prune", root, "--keep-last", "1")
    assert result.exit_code == 0, result.output
    left = files(root)
    for rel, data in stray.items():
        assert left[os.path.join(*rel.split("/"))] == data
    assert {e.path for e in read_manifest(root).entries} == {"w-06-0.80.npy"}
    assert "w-06-0.80.npy" in left and "w-01-0.90.npy" not in left


def test_prune_uses_the_recorded_direction(tmp_path):
    train(str(tmp_path / "a-{epoch}.npy"), losses=[0.1, 0.9, 0.5, 0.2], mode="max")
    result = invoke("prune", str(tmp_path), "--keep-best", "1")
    assert result.exit_code == 0, result.output
    assert [e.path for e in read_manifest(tmp_path).entries] == ["a-2.npy"]


def test_prune_reads_the_direction_of_a_manifest_without_per_run_states(tmp_path):
    train(str(tmp_path / "w-{epoch}.npy"), losses=[0.1, 0.9, 0.5], mode="max")
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    del data["states"]  # as manifests were written before runs kept their own state
    for entry in data["entries"]:
        entry["monitor"] = "custom"  # a name the name table does not place
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    result = invoke("prune", str(tmp_path), "--keep-best", "1")
    assert result.exit_code == 0, result.output
    assert [e.path for e in read_manifest(tmp_path).entries] == ["w-2.npy"]


def test_prune_ranks_each_run_by_its_own_monitor(tmp_path):
    # A shared root: one run minimises loss, the other maximises acc (written later, so the
    # manifest's top-level state is the acc run's).
    train(str(tmp_path / "loss-{epoch}.npy"), losses=[0.5, 0.2, 0.4])
    ck = Checkpointer(str(tmp_path / "acc-{epoch}.npy"), write=lambda p: open(p, "wb").write(b"x"),
                      monitor="acc")
    with ck:
        for epoch, acc in enumerate([0.6, 0.9, 0.7]):
            ck.on_epoch_end(epoch, {"acc": acc})
    result = invoke("prune", str(tmp_path), "--keep-best", "1")
    assert result.exit_code == 0, result.output
    assert sorted(e.path for e in read_manifest(tmp_path).entries) == ["acc-2.npy", "loss-2.npy"]
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == ["acc-2.npy", "loss-2.npy"]


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "--keep-last"),
        (("--keep-best", "0"), "--keep-best: got 0"),
        (("--keep-last", "1", "--mode", "up"), "--mode: got 'up'"),
    ],
)
def test_prune_rejects_bad_arguments(root, args, message):
    before = files(root)
    result = invoke("prune", root, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert files(root) == before


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["ls", "best", "verify", "prune"])
def test_a_missing_root_is_a_one_line_error(tmp_path, command):
    extra = ["--keep-last", "1"] if command == "prune" else []
    result = invoke(command, str(tmp_path / "nowhere"), *extra)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"ckptcore: error: {tmp_path / 'nowhere'}: does not exist"]
    assert result.stdout == ""


def test_a_root_without_manifest_is_a_one_line_error(tmp_path):
    (tmp_path / "w.npy").write_bytes(b"data")
    result = invoke("ls", str(tmp_path))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no ckptcore manifest" in lines[0]


def test_an_invalid_manifest_is_a_one_line_error(tmp_path):
    (tmp_path / MANIFEST_NAME).parent.mkdir(parents=True)
    (tmp_path / MANIFEST_NAME).write_text('{"entries": [{"name": "x", "path": "../x"}]}')
    result = invoke("verify", str(tmp_path))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "invalid manifest" in lines[0] and "path" in lines[0]


def test_an_unknown_url_scheme_is_a_one_line_error(tmp_path):
    result = invoke("ls", "nosuchscheme://bucket/run")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuchscheme" in lines[0]


def test_bad_storage_options_name_the_option(root):
    result = invoke("ls", root, "--storage-options", "[1]")
    assert result.exit_code == 2
    assert "--storage-options" in result.stderr and "JSON object" in result.stderr


# -- best and latest: checked before they are printed --------------------------------------------
def test_latest_prints_the_most_recent_path(root):
    result = invoke("latest", root)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == os.path.join(root, "w-06-0.80.npy")


@pytest.mark.parametrize("command, path", [("best", "w-04-0.30.npy"), ("latest", "w-06-0.80.npy")])
@pytest.mark.parametrize("damage", ["corrupt", "delete"])
def test_best_and_latest_exit_1_on_a_bad_or_missing_file(root, command, path, damage):
    target = os.path.join(root, path)
    if damage == "corrupt":
        with open(target, "r+b") as fh:
            fh.seek(150)
            fh.write(b"\x7f")
    else:
        os.remove(target)
    result = invoke(command, root)
    assert result.exit_code == 1
    assert result.stdout == ""  # no path for a script to load
    status = "BAD" if damage == "corrupt" else "MISSING"
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert f"the {command} checkpoint {path} is {status}" in result.stderr
    unchecked = invoke(command, root, "--no-verify")
    assert unchecked.exit_code == 0 and unchecked.stdout.strip() == target


def test_best_and_latest_json(root):
    best = json.loads(invoke("best", root, "--json").stdout)
    assert best["path"] == "w-04-0.30.npy" and best["is_best"] and best["status"] == "ok"
    assert best["location"] == os.path.join(root, "w-04-0.30.npy")
    os.remove(os.path.join(root, "w-06-0.80.npy"))
    result = invoke("latest", root, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "missing"


def test_verify_json(root):
    os.remove(os.path.join(root, "w-05-0.60.npy"))
    result = invoke("verify", root, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["counts"] == {"ok": 5, "missing": 1}
    statuses = {c["path"]: c["status"] for c in report["checkpoints"]}
    assert statuses["w-05-0.60.npy"] == "missing" and statuses["w-01-0.90.npy"] == "ok"


@pytest.mark.parametrize("dry_run", [True, False])
def test_prune_json(root, dry_run):
    args = ["--dry-run"] if dry_run else []
    result = invoke("prune", root, "--keep-last", "2", "--json", *args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] is dry_run
    assert report["kept"] == ["w-05-0.60.npy", "w-06-0.80.npy"]
    assert report["deleted"] == [os.path.join(root, f"w-0{e}-{v:.2f}.npy") for e, v in enumerate(LOSSES[:4], 1)]
    assert os.path.exists(os.path.join(root, "w-01-0.90.npy")) is dry_run


@pytest.mark.parametrize("option", ["--keep-last", "--keep-best"])
@pytest.mark.parametrize("command", ["prune", "plot"])
def test_keep_options_below_one_are_refused_in_the_options_terms(root, option, command):
    result = invoke(command, root, option, "0")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"ckptcore: error: {command}: {option}: got 0; {option} must be at least 1"


def test_ckptcore_version(root):
    from ckptcore import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"ckptcore {__version__}"


# -- the table: several runs, a narrow terminal ----------------------------------------------------
@pytest.fixture
def shared_root(tmp_path) -> str:
    """Two runs in one root, with names long enough to need cutting at 60 columns."""
    path = tmp_path / "shared"
    train(str(path / "digits-long-model-name-{epoch:02d}-{loss:.3f}.npy"))
    train(str(path / "other-{epoch:02d}-{loss:.3f}.npy"), losses=[0.4, 0.35])
    return str(path)


def _rows(output: str) -> list[str]:
    return [line for line in output.splitlines() if ".npy" in line or "…" in line]


def test_a_root_with_several_runs_gets_a_run_column(shared_root):
    manifest = read_manifest(shared_root)
    runs = list(dict.fromkeys(e.run_id for e in manifest.entries))
    assert len(runs) == 2
    result = runner.invoke(app, ["ls", shared_root], env={"COLUMNS": "200"})
    header = next(line for line in result.stdout.splitlines() if "name" in line)
    assert header.split()[1] == "run"
    rows = _rows(result.stdout)
    assert [r.split()[1] for r in rows] == [e.run_id for e in manifest.entries]


def test_a_one_run_root_has_no_run_column(root):
    header = next(line for line in invoke("ls", root).stdout.splitlines() if "name" in line)
    assert "run" not in header.split()


@pytest.mark.parametrize("fixture", ["root", "shared_root"])
def test_the_table_fits_60_columns_and_cuts_only_names(request, fixture):
    path = request.getfixturevalue(fixture)
    manifest = read_manifest(path)
    result = runner.invoke(app, ["ls", path], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert max(len(line) for line in lines) <= 60, "\n".join(lines)
    header = next(line for line in lines if " name " in f" {line} ")
    for column in ("name", "epoch", "step", "loss", "best", "size", "age"):
        assert column in header.split()
    rows = [line for line in lines if line.split() and line.split()[-1].endswith(("s", "m"))
            and "B" in line]
    assert len(rows) == len(manifest.entries)
    for row, entry in zip(rows, manifest.entries):
        cells = row.split()
        assert f"{entry.monitor_value:.5f}" in cells  # the metric in full
        assert str(entry.epoch) in cells
        name = next(c for c in cells if c.endswith(".npy"))
        head, _, tail = name.partition("…")
        assert entry.path.startswith(head) and entry.path.endswith(tail)
    if fixture == "shared_root":
        runs = list(dict.fromkeys(e.run_id for e in manifest.entries))
        caption = " ".join(lines[-3:])
        assert all(run in caption for run in runs)


# -- plot -----------------------------------------------------------------------------------------
def test_plot_draws_a_png_of_the_monitored_metric(root, tmp_path):
    matplotlib_image = pytest.importorskip("matplotlib.image")
    out = tmp_path / "loss.png"
    result = invoke("plot", root, "-o", str(out), "--keep-best", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{root}: drew {len(LOSSES)} checkpoints into {out}"
    pixels = matplotlib_image.imread(str(out))
    height, width = pixels.shape[:2]
    assert width > 600 and height > 250
    # gold stars for the best checkpoint: pixels near (1, 0.84, 0)
    gold = ((abs(pixels[..., 0] - 1.0) < 0.05) & (abs(pixels[..., 1] - 0.843) < 0.05) & (pixels[..., 2] < 0.1))
    assert gold.sum() > 20


def test_plot_json_and_default_output_name(root, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    report = json.loads(invoke("plot", root, "--json").stdout)
    assert report == {"root": root, "output": "run-checkpoints.png", "checkpoints": len(LOSSES)}
    assert (tmp_path / "run-checkpoints.png").stat().st_size > 1000


def test_plot_without_matplotlib_says_what_to_install(root, tmp_path):
    hide = tmp_path / "hide"
    (hide / "matplotlib").mkdir(parents=True)
    (hide / "matplotlib" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'matplotlib'\", name='matplotlib')\n"
    )
    code = "import sys; from ckptcore.cli import main; main(sys.argv[1:])"
    env = {**os.environ, "PYTHONPATH": str(hide)}
    out = subprocess.run([sys.executable, "-c", code, "plot", root, "-o", str(tmp_path / "x.png")],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"ckptcore: error: {root}: drawing a plot needs matplotlib, which is not installed; "
        'install it with: pip install "ckptcore[plot]"'
    ]


def test_plot_of_a_root_without_monitored_values_exits_1(tmp_path):
    with Checkpointer(str(tmp_path / "w-{epoch}.npy"), write=lambda p: open(p, "wb").write(b"x")) as ck:
        ck.on_epoch_end(0, {"loss": 1.0})
    result = invoke("plot", str(tmp_path), "-o", str(tmp_path / "x.png"))
    assert result.exit_code == 1
    assert "nothing to plot" in result.stderr


# -- formatting helpers ---------------------------------------------------------------------------
def test_human_size_and_age():
    assert human_size(0) == "0 B" and human_size(1536) == "1.5 KiB" and human_size(3 << 30) == "3.0 GiB"
    assert human_age("2024-01-01T00:00:00+00:00", now=_dt("2024-01-01T00:00:42+00:00")) == "42s"
    assert human_age("2024-01-01T00:00:00+00:00", now=_dt("2024-01-03T05:00:00+00:00")) == "2d"
    assert human_age("not a time") == "?"


def _dt(text):
    from datetime import datetime

    return datetime.fromisoformat(text)


# -- the console script ---------------------------------------------------------------------------
def test_console_script_runs_without_importing_heavy_packages(root):
    code = (
        "import sys; from ckptcore.cli import main\n"
        "try:\n    main(['best', sys.argv[1]])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = [m for m in ('keras', 'tensorflow', 'wandb', 'fsspec', 'torch', 'jax') if m in sys.modules]\n"
        "print('heavy:', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [os.path.join(root, "w-04-0.30.npy"), "heavy: []"]


# -- an fsspec URL --------------------------------------------------------------------------------
def test_every_command_works_on_a_memory_url(memory_url):
    import fsspec

    fs = fsspec.filesystem("memory")
    ck = train(memory_url + "/w-{epoch:02d}.npy", keep_last=4)
    listed = json.loads(invoke("ls", memory_url, "--json").stdout)
    assert [r["path"] for r in listed] == ["w-03.npy", "w-04.npy", "w-05.npy", "w-06.npy"]
    assert listed[0]["location"] == memory_url + "/w-03.npy"
    assert invoke("best", memory_url).stdout.strip() == ck.best() == memory_url + "/w-04.npy"
    assert invoke("verify", memory_url).exit_code == 0

    with fs.open(memory_url + "/w-05.npy", "wb") as fh:
        fh.write(b"corrupted")
    fs.rm(memory_url + "/w-03.npy")
    result = invoke("verify", memory_url)
    assert result.exit_code == 1
    assert "BAD" in result.stderr and "w-05.npy" in result.stderr
    assert "MISSING" in result.stderr and "w-03.npy" in result.stderr

    assert invoke("prune", memory_url, "--keep-last", "1", "--dry-run").exit_code == 0
    assert fs.exists(memory_url + "/w-04.npy")
    assert invoke("prune", memory_url, "--keep-last", "1").exit_code == 0
    remaining = sorted(p.rsplit("/", 1)[-1] for p in fs.find(memory_url))
    assert remaining == ["manifest.json", "w-06.npy"]  # the manifest: at MANIFEST_NAME
    manifest = Manifest.from_json(fs.cat(memory_url + "/" + MANIFEST_NAME))
    assert [e.path for e in manifest.entries] == ["w-06.npy"]
    assert bytes_digest(fs.cat(memory_url + "/w-06.npy")) == manifest.entries[0].digest


def test_a_memory_url_without_manifest_is_a_one_line_error(memory_url):
    result = invoke("ls", memory_url)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no ckptcore manifest" in lines[0]


def test_verify_streams_directory_checkpoints_on_a_memory_url(memory_url):
    import fsspec

    fs = fsspec.filesystem("memory")

    def write_dir(path: str) -> None:
        os.makedirs(os.path.join(path, "variables"))
        np.save(open(os.path.join(path, "variables", "w.npy"), "wb"), np.arange(6.0))
        open(os.path.join(path, "saved_model.pb"), "wb").write(b"graph")
        open(os.path.join(path, "fingerprint.pb"), "wb").write(b"fp")

    with Checkpointer(memory_url + "/m-{epoch}", write=write_dir, monitor="loss") as ck:
        ck.on_epoch_end(0, {"loss": 1.0})
        ck.on_epoch_end(1, {"loss": 0.5})
    result = invoke("verify", memory_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("ok ") == 2
    fs.pipe_file(memory_url + "/m-1/variables/w.npy", b"changed")
    result = invoke("verify", memory_url)
    assert result.exit_code == 1
    assert "BAD" in result.stderr and "m-1" in result.stderr and "m-2" not in result.stderr


# -- S3 (s3fs against moto's server on loopback), through the installed console script ---------
@pytest.fixture
def s3_root(monkeypatch):
    """A fresh bucket on a moto S3 server on 127.0.0.1; yields (root URL, storage_options)."""
    with running_s3(monkeypatch) as server:
        yield f"s3://{server.make_bucket()}/run", server.options


def test_console_script_on_s3_with_storage_options(s3_root):
    url, options = s3_root
    ck = train(url + "/w-{epoch:02d}.npy", keep_best=2, storage_options=options)
    script = shutil.which("ckptcore", path=os.path.dirname(sys.executable))
    assert script, "the ckptcore console script is not installed next to this Python"

    def run(*args):
        return subprocess.run([script, *args, "--storage-options", json.dumps(options)],
                              capture_output=True, text=True, timeout=120)

    listed = run("ls", url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["path"] for r in json.loads(listed.stdout)] == ["w-02.npy", "w-04.npy"]
    best = run("best", url)
    assert best.stdout.strip() == ck.best() == url + "/w-04.npy"
    verified = run("verify", url)
    assert verified.returncode == 0 and "2 ok" in verified.stdout
    missing = run("ls", url.replace("/run", "/elsewhere"))
    assert missing.returncode == 2
    assert len(missing.stderr.strip().splitlines()) == 1 and "no ckptcore manifest" in missing.stderr


def test_verify_does_not_pass_an_entry_without_a_digest(root):
    from ckptcore.backends.local import LocalBackend
    from ckptcore.commit import load_manifest
    from ckptcore.manifest import MANIFEST_NAME

    backend = LocalBackend(root)
    manifest = load_manifest(backend)
    manifest.entries[1].digest = None
    backend.write_bytes(MANIFEST_NAME, manifest.to_json().encode())
    # Garbage of the recorded size: only a digest could tell (a size that differs is BAD).
    open(os.path.join(root, manifest.entries[1].path), "wb").write(b"g" * manifest.entries[1].size)
    result = invoke("verify", root)
    assert result.exit_code == 1
    assert result.stderr.startswith("UNVERIFIED") and manifest.entries[1].path in result.stderr
    assert "no digest" in result.stderr and "1 unverified" in result.stdout
    as_json = invoke("verify", root, "--json")
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["counts"]["unverified"] == 1
    rows = {row["path"]: row for row in report["checkpoints"]}
    assert rows[manifest.entries[1].path]["status"] == "unverified"
    assert sum(row["status"] == "ok" for row in rows.values()) == len(LOSSES) - 1
    assert all(row["location"].startswith(root) for row in rows.values())


def test_a_missing_bucket_is_named_not_a_missing_manifest(s3_root):
    _url, options = s3_root
    result = invoke("ls", "s3://ckptcore-no-such-bucket/run", "--storage-options", json.dumps(options))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "ckptcore: error: s3://ckptcore-no-such-bucket/run: bucket 'ckptcore-no-such-bucket' does not "
        "exist at s3://ckptcore-no-such-bucket; ckptcore creates no buckets: create it, or fix the URL"
    ]
    assert MANIFEST_NAME not in result.stderr
