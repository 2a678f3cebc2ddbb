"""An object store (S3 or any S3-compatible server) behind a local mirror.

`root` is a mirror under `data_dir`: stages read and write local files there, and this class
moves bytes. Reads, listings and plain uploads go through pyarrow's S3 filesystem (already a
dependency, C++, multipart for large files). The one thing pyarrow cannot say is "only if
absent": an exclusive push is a PutObject with ``If-None-Match: *`` through boto3 (a
dependency litellm brings anyway). S3 (since 2024), MinIO, R2 and moto refuse such a put with
412 when the key exists, so two writers can never both win.

Why an exclusive push is safe, step by step:
1. HEAD the key; when it exists go to 3 (a server that ignored If-None-Match still refuses here).
2. PUT with If-None-Match: * ; success: pushed. A 412 means someone got there first: go to 3.
3. The object is there: when its ETag is our bytes' MD5 (a single-part put), it is our own
   earlier push (a crash or a lost answer between the upload and unstaging): done. Otherwise
   raise ObjectExists; the local file stays staged and nothing is replaced.
Segment names carry the logbook's identity, so 3 with other bytes means two processes share
an identity (a copied data_dir): worth an error, never an overwrite.

Pulls list the prefix once, fetch in parallel what the mirror lacks (or holds at another size),
each into a hidden temporary file that is fsynced and renamed into place; a staged local file
is never replaced. Segments are immutable, so after the first pull a pull is one listing.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pyarrow import fs as pafs

from store.settings import StoreSettings
from store.store import (
    MARKER,
    UNPUSHED,
    ObjectExists,
    PullReport,
    PushReport,
    Store,
    StoreError,
    StoreUnavailable,
    fsync_dir,
    marker_bytes,
    marker_files,
    tree_files,
    write_marker,
)

log = logging.getLogger("apprentice.store")
T = TypeVar("T")
CHUNK = 1 << 20
FETCH_THREADS = 8  # pulls are latency-bound: a few requests in flight hide the round trips
CONNECT_TIMEOUT_S = 3.0
ATTEMPTS = 2  # per request; an unreachable store fails fast and the caller tries later
PRECONDITION_FAILED = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


class ObjectStore(Store):
    """`s3://bucket/prefix`, mirrored under `mirror`."""

    remote = True

    def __init__(self, settings: StoreSettings, mirror: Path) -> None:
        super().__init__(mirror)
        assert settings.url is not None
        parts = urlsplit(settings.url)
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self._settings = settings
        self._secrets = [
            s.get_secret_value()
            for s in (settings.access_key_id, settings.secret_access_key)
            if s is not None and s.get_secret_value()
        ]
        self._fs = self._filesystem()
        self._client: Any = None
        self._client_lock = threading.Lock()

    def describe(self) -> str:
        endpoint = f" at {self._settings.endpoint_url}" if self._settings.endpoint_url else ""
        return f"{self.url}{endpoint} (mirror {self.root})"

    # -- keys ------------------------------------------------------------------------------

    def key(self, rel: str) -> str:
        """The object key of a path relative to root."""
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _arrow_path(self, rel: str) -> str:
        return f"{self.bucket}/{self.key(rel)}".rstrip("/")

    # -- pull ------------------------------------------------------------------------------

    def pull(self, prefix: str) -> PullReport:
        started = time.monotonic()
        remote = self._list(prefix)
        todo = []
        for rel, size in remote.items():
            local = self.root / rel
            if self._is_marked(local) or _size(local) == size:
                continue
            todo.append((rel, local, size))
        self._fetch_all([(rel, local) for rel, local, _ in todo])
        return PullReport(
            prefix, len(remote), len(todo), sum(s for *_, s in todo), time.monotonic() - started
        )

    def pull_trees(self, prefix: str) -> PullReport:
        started = time.monotonic()
        remote = self._list(prefix)
        fetched = size = 0
        for rel in sorted(remote):
            if rel.rsplit("/", 1)[-1] != MARKER or "/" not in rel:
                continue
            folder_rel = rel.rsplit("/", 1)[0]
            local = self.root / folder_rel
            if local.exists():
                continue  # trees are versioned: a folder here is this one, pulled or written
            files = marker_files(self._guard(functools.partial(self._read, rel)))
            if not all(_plain(name) for name in files):
                raise StoreError(f"{self.url}/{rel} lists a file outside its folder")
            self._fetch_tree(folder_rel, local, files)
            fetched += len(files) + 1
            size += sum(files.values())
        return PullReport(prefix, len(remote), fetched, size, time.monotonic() - started)

    def _fetch_tree(self, folder_rel: str, local: Path, files: dict[str, int]) -> None:
        # The whole folder is fetched into a hidden sibling and renamed into place, so a
        # reader of the mirror sees all of a student or none of it.
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.pull")
        try:
            self._fetch_all([(f"{folder_rel}/{name}", tmp / name) for name in files])
            for name, expected in files.items():
                if _size(tmp / name) != expected:
                    raise StoreError(
                        f"{self.url}/{folder_rel}/{name} changed while it was pulled "
                        f"({_size(tmp / name)} bytes, its marker says {expected}); try again"
                    )
            (tmp / MARKER).write_bytes(marker_bytes(files))
            try:
                os.rename(tmp, local)
            except OSError:
                if not local.exists():
                    raise  # otherwise another process pulled the same folder first: fine
            fsync_dir(local.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _list(self, prefix: str) -> dict[str, int]:
        """Remote files under `prefix`: path relative to root -> size."""
        skip = len(self._arrow_path("")) + 1  # "bucket/prefix/"
        selector = pafs.FileSelector(self._arrow_path(prefix), recursive=True, allow_not_found=True)
        infos = self._guard(functools.partial(self._fs.get_file_info, selector))
        out = {}
        for info in infos:
            rel = info.path[skip:]
            if info.type == pafs.FileType.File and _plain(rel):
                out[rel] = int(info.size)
        return out

    def _fetch_all(self, items: list[tuple[str, Path]]) -> None:
        calls = [functools.partial(self._guard, functools.partial(self._fetch, rel, local))
                 for rel, local in items]  # fmt: skip
        if len(calls) <= 1:
            for call in calls:
                call()
            return
        with concurrent.futures.ThreadPoolExecutor(FETCH_THREADS) as pool:
            for future in [pool.submit(call) for call in calls]:
                future.result()

    def _fetch(self, rel: str, local: Path) -> None:
        """Download one object: a hidden temporary file, fsynced, renamed into place."""
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.pull")
        try:
            with self._fs.open_input_stream(self._arrow_path(rel)) as src, open(tmp, "wb") as out:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)

    def _read(self, rel: str) -> bytes:
        with self._fs.open_input_stream(self._arrow_path(rel)) as src:
            return bytes(src.read())

    # -- push ------------------------------------------------------------------------------

    def push(self, path: Path, exclusive: bool = False) -> bool:
        rel = self.relative(path)
        if exclusive:
            return self._guard(functools.partial(self._put_new, path, rel))
        self._guard(functools.partial(self._upload, path, rel))
        return True

    def _upload(self, path: Path, rel: str) -> None:
        with open(path, "rb") as src, self._fs.open_output_stream(self._arrow_path(rel)) as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)

    def _put_new(self, path: Path, rel: str) -> bool:
        """The exclusive push of the module docstring; True when this call created the object."""
        data = path.read_bytes()
        key, client = self.key(rel), self._boto()
        head = self._head(key)
        if head is None:
            try:
                client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
                return True
            except Exception as exc:
                if not _error_codes(exc) & PRECONDITION_FAILED:
                    raise
            head = self._head(key)
            if head is None:  # a 409: another conditional write of this key is in flight
                raise StoreError(f"{self.url}/{rel} is being written by another process")
        etag = str(head.get("ETag", "")).strip('"')
        same = etag == hashlib.md5(data).hexdigest() or (
            "-" in etag and int(head.get("ContentLength", -1)) == len(data)
        )
        if same:
            return False
        raise ObjectExists(
            f"{self.url}/{rel} exists already with other bytes; it was not replaced (two "
            "processes share one logbook identity? a copied data_dir does that)"
        )

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self._boto().head_object(Bucket=self.bucket, Key=key)
            return head
        except Exception as exc:
            if _error_codes(exc) & {"404", "NoSuchKey", "NotFound"}:
                return None
            raise

    def push_tree(self, folder: Path, exclusive: bool = False) -> PushReport:
        started = time.monotonic()
        rel = self.relative(folder)
        files = tree_files(folder)
        marker = f"{rel}/{MARKER}"
        if exclusive and self._guard(functools.partial(self._head, self.key(marker))):
            raise ObjectExists(f"{self.url}/{rel} was published already (it has {MARKER})")
        for name in files:
            self._guard(functools.partial(self._upload, folder / name, f"{rel}/{name}"))
        # The marker last (locally too, so the mirror's copy reads as complete). Exclusive: of
        # two writers racing past the HEAD above, one marker wins; the loser raises here.
        write_marker(folder, files, exclusive=False)
        self.push(folder / MARKER, exclusive=exclusive)
        return PushReport(len(files) + 1, 0, sum(files.values()), time.monotonic() - started)

    # -- staging ---------------------------------------------------------------------------

    def stage(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        mark = _mark_of(path)
        fd = os.open(mark, os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)
        fsync_dir(path.parent)  # the mark is on disk before the file it marks is linked

    def unstage(self, path: Path) -> None:
        _mark_of(path).unlink(missing_ok=True)

    def staged(self, prefix: str) -> list[Path]:
        folder = self.root / prefix
        if not folder.exists():
            return []
        return sorted(
            m.with_name(m.name[1 : -len(UNPUSHED)]) for m in folder.rglob(f".*{UNPUSHED}")
        )

    def push_staged(self, paths: list[Path]) -> PushReport:
        started = time.monotonic()
        pushed = already = size = 0
        failed: list[tuple[Path, str]] = []
        for i, path in enumerate(paths):
            try:
                created = self.push(path, exclusive=True)
            except StoreUnavailable as exc:
                # The store is down: the rest would wait out the same timeouts; next tick.
                failed.extend((p, str(exc)) for p in paths[i:])
                break
            except (ObjectExists, StoreError, OSError) as exc:
                failed.append((path, str(exc)))
                continue
            self.unstage(path)
            pushed, already = pushed + created, already + (not created)
            size += path.stat().st_size
        return PushReport(pushed, already, size, time.monotonic() - started, tuple(failed))

    def _is_marked(self, path: Path) -> bool:
        return _mark_of(path).exists()

    # -- clients and errors ----------------------------------------------------------------

    def _filesystem(self) -> pafs.S3FileSystem:
        s = self._settings
        options: dict[str, Any] = {
            "region": s.region or "us-east-1",
            "connect_timeout": CONNECT_TIMEOUT_S,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=ATTEMPTS),
            # Without it every upload is a three-request multipart one and every read starts
            # with a HEAD (measured: a plain push took 46 ms on moto, one PUT 18 ms); errors
            # still surface inside the same call, at the first read or at close.
            "allow_delayed_open": True,
        }
        if s.access_key_id is not None and s.secret_access_key is not None:
            options["access_key"] = s.access_key_id.get_secret_value()
            options["secret_key"] = s.secret_access_key.get_secret_value()
        if s.endpoint_url:
            endpoint = urlsplit(s.endpoint_url)
            options["endpoint_override"] = endpoint.netloc
            options["scheme"] = endpoint.scheme
        return pafs.S3FileSystem(**options)

    def _boto(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config as BotoConfig

        # botocore's DEBUG lines print each signed request, access key id included: a store
        # never lets them through, whatever level the process logs at.
        quiet = logging.getLogger("botocore")
        if quiet.level < logging.INFO:  # NOTSET (0) included: it would follow the root's
            quiet.setLevel(logging.INFO)
        s = self._settings
        config = BotoConfig(
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=60,
            retries={"max_attempts": ATTEMPTS, "mode": "standard"},
            s3={"addressing_style": "path"} if s.endpoint_url else None,
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=s.endpoint_url,
            region_name=s.region or "us-east-1",
            aws_access_key_id=s.access_key_id.get_secret_value() if s.access_key_id else None,
            aws_secret_access_key=(
                s.secret_access_key.get_secret_value() if s.secret_access_key else None
            ),
            config=config,
        )

    def _guard(self, call: Callable[[], T]) -> T:
        """Run a call on the store; every failure to reach it becomes StoreUnavailable."""
        try:
            return call()
        except StoreError:
            raise
        except FileNotFoundError as exc:
            raise StoreError(self._redact(f"{self.describe()}: {exc}")) from None
        except Exception as exc:
            if not _is_remote_error(exc):
                raise
            reason = self._redact(f"{type(exc).__name__}: {exc}")[:300]
            raise StoreUnavailable(
                f"The store {self.url}"
                + (f" at {self._settings.endpoint_url}" if self._settings.endpoint_url else "")
                + f" cannot be reached or refused the request ({reason}); check [store] url, "
                "endpoint_url and credentials."
            ) from None

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _plain(rel: str) -> bool:
    """A key the mirror may hold: no hidden name (our temporaries), nothing that climbs out."""
    parts = rel.split("/")
    return (
        bool(rel)
        and not rel.startswith("/")
        and ".." not in parts
        and not parts[-1].startswith(".")
    )


def _mark_of(path: Path) -> Path:
    return path.with_name(f".{path.name}{UNPUSHED}")


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _error_codes(exc: Exception) -> set[str]:
    """botocore's error code and HTTP status of a failed call (empty for other errors)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return set()
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return {str(v) for v in (code, status) if v is not None}


def _is_remote_error(exc: Exception) -> bool:
    # pyarrow reports S3 failures as an OSError without an errno (a full local disk has one);
    # botocore as BotoCoreError or ClientError.
    if isinstance(exc, OSError):
        return exc.errno is None
    return type(exc).__module__.split(".")[0] in ("botocore", "boto3")
