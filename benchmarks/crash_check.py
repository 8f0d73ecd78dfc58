"""What a killed process left in a checkpoint root, checked against its manifest.

Four kinds of failure, each counted on its own:

* ``unaccounted``: a file or directory under a final (visible) name that the manifest does not
  account for: no entry for that path with its real size and digest, and no pending record for
  that path holding its digest;
* ``lie``: the manifest lists a checkpoint that is not there, or whose bytes differ;
* ``corrupt``: a file under a final name does not load (a torn write);
* ``lost_best``: a best checkpoint is on disk but the manifest names no best, another path, or
  a stored best value no committed checkpoint holds.

The unaccounted check uses ``ckptcore.audit.unaccounted(root)`` when ckptcore has it (the
commit protocol's own definition, pending records included), and otherwise the manifest API
(:func:`ckptcore.commit.load_manifest`, entries and, where the manifest has them, ``pending``).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Callable, Iterable

__all__ = ["KINDS", "check_root", "load_checkpoint", "manifest_of", "unaccounted"]

KINDS = ("unaccounted", "lie", "corrupt", "lost_best")


def manifest_of(root: str) -> Any:
    """The manifest of a local root as a reader sees it (its pending records settled by what is
    on disk, nothing written); None when there is none; raises ManifestError if unreadable."""
    from ckptcore.backends.local import LocalBackend

    try:
        from ckptcore.store import load_settled as load
    except ImportError:  # a ckptcore without pending records
        from ckptcore.commit import load_manifest as load

    backend = LocalBackend(root)
    try:
        return load(backend)
    finally:
        backend.close()


def _final_names(root: str) -> list[str]:
    """The visible names directly under ``root`` that are not ckptcore's own files."""
    from ckptcore.manifest import MANIFEST_NAME

    own = MANIFEST_NAME.split("/", 1)[0]
    if not os.path.isdir(root):
        return []
    return sorted(n for n in os.listdir(root)
                  if not n.startswith(".") and n != own and not n.startswith(own + ".unreadable-"))


def _recorded(record: Any) -> Any:
    """The digest an entry or record names: ``digest`` ("algorithm:hex"), or an older
    ckptcore's ``sha256`` (bare hex)."""
    get = record.get if isinstance(record, dict) else lambda k, r=record: getattr(r, k, None)
    return get("digest") or get("sha256")


def _same(path: str, size: int | None, recorded: Any, seen: dict | None = None) -> bool:
    """Whether the checkpoint at ``path`` has ``size`` (unless None) and the ``recorded`` digest;
    ``seen`` keeps the digests computed so far (one hash per file and algorithm)."""
    from ckptcore.digest import digest

    if not recorded:
        return False
    # An older ckptcore records bare SHA-256 hex, and its digest() returns the same.
    algorithm = recorded.split(":", 1)[0] if ":" in recorded else None
    seen = {} if seen is None else seen
    if (path, algorithm) not in seen:
        seen[path, algorithm] = digest(path) if algorithm is None else digest(path, algorithm)
    found = seen[path, algorithm]
    return found[1] == recorded and size in (None, found[0])


def _pending_digests(manifest: Any) -> dict[str, set[str]]:
    """path -> digests a pending record vouches for (the new one; the replaced one as well)."""
    found: dict[str, set[str]] = {}
    for record in getattr(manifest, "pending", None) or ():
        get = record.get if isinstance(record, dict) else lambda k, r=record: getattr(r, k, None)
        digests = {_recorded(record), get("replaces"), get("replaces_sha256"), get("old_sha256")} - {None}
        found.setdefault(get("path"), set()).update(digests)
    return found


def _own_unaccounted(root: str) -> list[str]:
    manifest = manifest_of(root)
    entries = {e.path: e for e in manifest.entries} if manifest is not None else {}
    pending = _pending_digests(manifest) if manifest is not None else {}
    problems = []
    for name in _final_names(root):
        path = os.path.join(root, name)
        entry, seen = entries.get(name), {}
        if entry is not None and _same(path, entry.size, _recorded(entry), seen):
            continue
        if any(_same(path, None, d, seen) for d in pending.get(name, ())):
            continue
        why = "not in the manifest" if entry is None else "its bytes are not the ones the manifest lists"
        problems.append(f"{name}: under a final name, {why}")
    return problems


def unaccounted(root: str) -> list[str]:
    """Final-name checkpoints of ``root`` the manifest does not account for, one line each."""
    try:
        from ckptcore.audit import unaccounted as audit  # type: ignore[import-not-found]
    except ImportError:
        return _own_unaccounted(root)
    # ckptcore's own definition decides which; the lines say why, in this module's words.
    why = {line.split(": ", 1)[0]: line for line in _own_unaccounted(root)}
    return [why.get(path, f"{path}: under a final name, not accounted for") for path in audit(root)]


def _lies(root: str, manifest: Any) -> list[str]:
    problems = []
    for entry in manifest.entries:
        full = os.path.join(root, *entry.path.split("/"))
        if not os.path.exists(full):
            problems.append(f"{entry.path}: listed in the manifest but missing")
        elif not _same(full, entry.size, _recorded(entry)):
            problems.append(f"{entry.path}: listed with a size/digest the file does not have")
    return problems


def load_checkpoint(path: str, models: dict[str, Any], make_model: Callable[[], Any]) -> None:
    """Load one checkpoint file (or every file of a directory one); raises when it is torn."""
    if os.path.isdir(path):
        names = sorted(os.listdir(path))
        if not names:
            raise ValueError("an empty directory under a final name")
        for name in names:
            load_checkpoint(os.path.join(path, name), models, make_model)
    elif path.endswith(".npy"):
        import numpy as np

        np.load(path, allow_pickle=False)
    elif path.endswith(".weights.h5"):
        if "weights" not in models:
            models["weights"] = make_model()
        models["weights"].load_weights(path)
    elif path.endswith(".keras"):
        import keras

        keras.saving.load_model(path, safe_mode=True, compile=False)
    else:
        raise ValueError(f"unexpected file {os.path.basename(path)!r}")


def _corrupt(root: str, models: dict[str, Any], make_model: Callable[[], Any]) -> list[str]:
    problems = []
    for name in _final_names(root):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Keras on optimizer state it does not load
                load_checkpoint(os.path.join(root, name), models, make_model)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
            problems.append(f"{name}: does not load: {type(exc).__name__}: {str(exc)[:100]}")
    return problems


def _lost_best(root: str, manifest: Any, best_names: Iterable[str]) -> list[str]:
    on_disk = [n for n in best_names if os.path.exists(os.path.join(root, n))]
    if not on_disk:
        return []
    best = manifest.best() if manifest is not None else None
    if best is None:
        return [f"{on_disk[0]}: a best checkpoint on disk, but the manifest names no best"]
    if best.path not in on_disk:
        return [f"{on_disk[0]}: on disk, but the manifest's best is {best.path!r}"]
    stored = (manifest.tracker or {}).get("best")
    value = best.monitor_value
    if stored is not None and value is not None and not math.isclose(stored, value, rel_tol=1e-9):
        return [f"{best.path}: the stored best is {stored!r}, the best checkpoint holds {value!r}"]
    return []


def check_root(root: str, best_names: Iterable[str] = (), make_model: Callable[[], Any] | None = None,
               models: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """Every kind of failure (:data:`KINDS`) found in one checkpoint root.

    Args:
        root: A local checkpoint root (a directory with ckptcore's manifest).
        best_names: Final names that hold a best checkpoint (``save_best_only`` with a fixed name).
        make_model: Builds a Keras model to load ``.weights.h5`` files into.
        models: A cache for ``make_model``'s model across calls.
    """
    from ckptcore.errors import ManifestError

    found: dict[str, list[str]] = {kind: [] for kind in KINDS}
    try:
        manifest = manifest_of(root)
    except ManifestError as exc:
        found["lie"].append(f"the manifest does not parse: {exc}")
        return found
    found["unaccounted"] = unaccounted(root)
    if manifest is not None:
        found["lie"] = _lies(root, manifest)
    found["corrupt"] = _corrupt(root, models if models is not None else {}, make_model or _no_model)
    found["lost_best"] = _lost_best(root, manifest, best_names)
    return found


def _no_model() -> Any:
    raise ValueError("a .weights.h5 file, but no model to load it into")
