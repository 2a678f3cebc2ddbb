"""The shared store: files every replica shares, read and written as local paths under `root`.

Every stage reads and writes shared files (segments/, feedback/, datasets/, students/) as
plain local paths under `store.root`, so DuckDB, pyarrow and torch need nothing new. What
differs is who moves bytes:

- a *path store* (`[store] url` unset, a directory, or ``file://``): `root` is that directory,
  shared by replicas through NFS/EFS or by processes on one host; `pull` and `push` have
  nothing to move. Unset, `root` is `data_dir` itself, exactly as before stores existed.
- an *object store* (``s3://bucket/prefix``, `store.object_store`): `root` is a local mirror
  under `data_dir`, and the store moves bytes between it and the bucket.

The contract both keep, so callers never ask which one they have:
- `pull(prefix)` makes the remote files under `prefix` readable under `root` (each file appears
  whole or not at all); `pull_trees(prefix)` does the same for whole folders (a dataset or a
  student version), and only for folders a writer finished.
- `push(path, exclusive=True)` never replaces an object: a seal never overwrites a file.
- `push_tree(folder)` writes the folder's completion marker (`_SUCCESS`, listing every file
  and its size) *last*, so a reader that sees the marker sees every file.
- `stage(path)` marks, durably and before the file is linked, a file that must still be
  pushed; the mark goes only once the push succeeded, so a crash or an outage in between
  leaves the file in `root`, marked, for the next try (see `logbook.sealing`).
- anything that cannot reach the store raises `StoreUnavailable`, whose message names the URL
  and never a credential.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from store.settings import StoreSettings

MARKER = "_SUCCESS"  # a finished tree: JSON {"files": {relative path: size}}
UNPUSHED = ".unpushed"  # `.<name>.unpushed` beside a file that is staged for push
MIRROR_DIR = "store-mirror"  # the object store's local mirror, under data_dir


class StoreError(Exception):
    """The shared store refused or failed an operation; the message holds no credential."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (or refused our credentials)."""


class ObjectExists(StoreError):
    """An exclusive push found another object (other bytes) under the same key."""


@dataclass(frozen=True)
class PullReport:
    """What a pull found under a prefix and what it had to fetch."""

    prefix: str
    listed: int = 0  # remote files under the prefix
    fetched: int = 0  # of them, fetched now (the mirror lacked them or held other sizes)
    bytes: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class PushReport:
    """What a push sent; `already` counts files whose identical object was already there."""

    pushed: int = 0
    already: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failed: tuple[tuple[Path, str], ...] = ()  # (file, why) for `push_staged`


class Store:
    """A path store: `root` is the shared directory, so there are no bytes to move."""

    remote = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        """Where the store is, for logs (never a credential)."""
        return f"directory {self.root}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    def relative(self, path: Path) -> str:
        """`path` as a key under `root` ("segments/route=r/..."); a path outside is an error."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            raise StoreError(f"{path} is not under the store's root {self.root}") from None

    # -- moving bytes (nothing to move for a path store) -----------------------------------

    def pull(self, prefix: str) -> PullReport:
        """Make the remote files under `prefix` readable under `root`."""
        return PullReport(prefix)

    def pull_trees(self, prefix: str) -> PullReport:
        """Make every finished folder (one with a `_SUCCESS` marker) under `prefix` readable."""
        return PullReport(prefix)

    def push(self, path: Path, exclusive: bool = False) -> bool:
        """Upload one file under `root` to its key; False when an identical object was there
        already. `exclusive`: raise ObjectExists rather than replace another object."""
        self.relative(path)
        return False

    def push_tree(self, folder: Path, exclusive: bool = False) -> PushReport:
        """Publish a finished folder: its files, then its `_SUCCESS` marker last.

        Here the files are in place already; the marker is written atomically (and, when
        `exclusive`, never over an existing one), so readers of both kinds of store can wait
        for it the same way."""
        started = time.monotonic()
        files = tree_files(folder)
        write_marker(folder, files, exclusive)
        return PushReport(0, len(files), sum(files.values()), time.monotonic() - started)

    # -- staging: files that must still be pushed ------------------------------------------

    def stage(self, path: Path) -> None:
        """Mark `path` (not yet linked) as needing a push; durable before this returns."""

    def unstage(self, path: Path) -> None:
        """Drop the mark of `path` (its push succeeded, or it was never linked)."""

    def staged(self, prefix: str) -> list[Path]:
        """Files under `prefix` that are marked, whether or not the file was linked."""
        return []

    def push_staged(self, paths: list[Path]) -> PushReport:
        """Push each staged file exclusively and unstage it; stop at the first unreachable
        push (the rest wait for the next try). Failures are listed, never raised."""
        return PushReport()

    def is_complete(self, folder: Path) -> bool:
        """Whether a writer finished `folder` (its `_SUCCESS` marker is there)."""
        return (folder / MARKER).is_file()


def open_store(settings: StoreSettings, data_dir: Path, mirror: Path | None = None) -> Store:
    """The store the settings name. Nothing is contacted yet: a store that is down fails the
    first pull or push with StoreUnavailable, not the start of a server.

    `mirror` is the local copy of an object store (default `data_dir/store-mirror`);
    processes on one host may share one."""
    if settings.url is None:
        return Store(data_dir)
    if not settings.is_object_store:
        return Store(Path(settings.url.removeprefix("file://")))
    from store.object_store import ObjectStore

    return ObjectStore(settings, mirror or data_dir / MIRROR_DIR)


def tree_files(folder: Path) -> dict[str, int]:
    """The files of a folder (relative posix path -> size), without markers and hidden temps."""
    if not folder.is_dir():
        raise StoreError(f"{folder} is not a folder; nothing to publish")
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and rel.as_posix() != MARKER and not _hidden(rel):
            out[rel.as_posix()] = path.stat().st_size
    return out


def write_marker(folder: Path, files: dict[str, int], exclusive: bool) -> None:
    """Write `folder/_SUCCESS` atomically; with `exclusive`, ObjectExists if it is there."""
    target = folder / MARKER
    tmp = folder / f".{MARKER}.{os.getpid()}.tmp"
    tmp.write_bytes(marker_bytes(files))
    try:
        if exclusive:
            os.link(tmp, target)  # a link never replaces a file
        else:
            os.replace(tmp, target)
    except FileExistsError:
        raise ObjectExists(f"{folder} was published already (it has {MARKER})") from None
    finally:
        tmp.unlink(missing_ok=True)


def marker_bytes(files: dict[str, int]) -> bytes:
    return json.dumps({"files": files}, indent=1, sort_keys=True).encode()


def marker_files(data: bytes) -> dict[str, int]:
    """The files a `_SUCCESS` marker lists."""
    files = json.loads(data)["files"]
    return {str(k): int(v) for k, v in files.items()}


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def fsync_dir(folder: Path) -> None:
    """Make the entries just made in `folder` (a link, a rename, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
