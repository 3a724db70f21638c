"""Small file API over local paths and `gs://` objects: read, list, exists, delete, atomic write.

`gs://` goes through google-cloud-storage directly rather than Beam's `FileSystems`: Beam's GCS
client first looks for default credentials with four retries (about 25 s when none exist, e.g.
against `gcp-storage-emulator`), while the storage client uses anonymous credentials whenever
`STORAGE_EMULATOR_HOST` is set. On a real project both use Application Default Credentials.

Atomic write = write the whole payload under a temporary name in `DIR/_tmp/`, then rename onto
the final name, so a reader never sees a half-written file under its final name (a local rename
is atomic; a GCS rename is copy-then-delete and the final object appears complete or not at all).
"""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from typing import BinaryIO, List, Optional, Tuple

TMP_DIR = "_tmp"

_client_lock = threading.Lock()
_client = None


def is_gcs(path: str) -> bool:
    return path.startswith("gs://")


def join(directory: str, *names: str) -> str:
    """`directory/name/...` for local paths and gs:// alike."""
    if is_gcs(directory):
        return "/".join([directory.rstrip("/"), *names])
    return os.path.join(directory, *names)


def dirname(path: str) -> str:
    """Folder of a file path (local or gs://), without a trailing slash."""
    if is_gcs(path):
        return path.rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(path))


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _split_gcs(path: str) -> Tuple[str, str]:
    bucket, _, name = path[len("gs://") :].partition("/")
    if not bucket:
        raise ValueError(f"gs:// path without a bucket: {path!r}")
    return bucket, name


def _gcs_client():
    """One storage client per process (thread-safe, created on first use)."""
    global _client
    with _client_lock:
        if _client is None:
            from google.cloud import storage

            _client = storage.Client()
        return _client


def _blob(path: str):
    bucket, name = _split_gcs(path)
    return _gcs_client().bucket(bucket).blob(name)


def _existing_blob(path: str):
    """The blob at a gs:// path with its metadata loaded; FileNotFoundError when absent."""
    from google.api_core import exceptions

    blob = _blob(path)
    try:
        blob.reload()
    except exceptions.NotFound as e:
        raise FileNotFoundError(path) from e
    return blob


class ReadBoundExceeded(Exception):
    """A bounded read passed its byte limit (`bound` "size") or its wall clock (`bound` "time")."""

    def __init__(self, bound: str, detail: str) -> None:
        super().__init__(detail)
        self.bound = bound


class _BoundedSink(io.RawIOBase):
    """A write target that stops a streaming download past `limit` bytes or `deadline`."""

    def __init__(self, limit: Optional[int], deadline: Optional[float]) -> None:
        super().__init__()
        self.data = bytearray()
        self._limit, self._deadline = limit, deadline

    def writable(self) -> bool:
        return True

    def write(self, chunk) -> int:
        self.data += chunk
        if self._limit is not None and len(self.data) > self._limit:
            raise ReadBoundExceeded("size", f"over {self._limit} bytes")
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise ReadBoundExceeded("time", "read past its deadline")
        return len(chunk)


def read_bytes(
    path: str, limit: Optional[int] = None, timeout_s: Optional[float] = None, deadline_s: Optional[float] = None
) -> bytes:
    """Whole content of a file; FileNotFoundError when it does not exist.

    For gs:// (local callers that need bounds use `bounded_read`): `limit` asks for the first
    `limit` + 1 bytes only (one ranged request) and `deadline_s` is a wall clock for the whole
    read; either raises `ReadBoundExceeded` as the body streams in, so a huge or slow object never
    fills memory or holds a worker. `timeout_s` bounds the connect and each socket read.
    """
    if is_gcs(path):
        from google.api_core import exceptions

        blob = _blob(path)
        kwargs: dict = {} if timeout_s is None else {"timeout": timeout_s}
        try:
            if limit is None and deadline_s is None:
                return blob.download_as_bytes(**kwargs)
            sink = _BoundedSink(limit, None if deadline_s is None else time.monotonic() + deadline_s)
            blob.download_to_file(sink, start=0, end=limit, **kwargs)  # `end` is inclusive
            return bytes(sink.data)
        except exceptions.RequestRangeNotSatisfiable:  # a range on an empty object
            return b""
        except exceptions.NotFound as e:
            raise FileNotFoundError(path) from e
    with open(path, "rb") as f:
        return f.read()


def open_read(path: str, chunk_size: Optional[int] = None) -> BinaryIO:
    """A streaming, seekable binary reader (large CSVs are not loaded whole). For gs://,
    `chunk_size` is the size of each ranged read (smaller: cheaper seeks over skipped data)."""
    if is_gcs(path):
        return _existing_blob(path).open("rb", **({"chunk_size": chunk_size} if chunk_size else {}))
    return open(path, "rb")


def read_range(path: str, offset: int, length: int) -> bytes:
    """`length` bytes from `offset` (fewer when the file ends first); FileNotFoundError when absent."""
    if length <= 0:
        return b""
    if is_gcs(path):
        from google.api_core import exceptions

        try:
            return _blob(path).download_as_bytes(start=offset, end=offset + length - 1)
        except exceptions.NotFound as e:
            raise FileNotFoundError(path) from e
        except exceptions.RequestRangeNotSatisfiable:
            return b""  # the object ends before `offset`
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def size(path: str) -> int:
    """Size in bytes; FileNotFoundError when absent."""
    if is_gcs(path):
        return int(_existing_blob(path).size)
    return os.path.getsize(path)


def list_dir(directory: str) -> List[str]:
    """Full paths of the files directly inside a folder (no recursion); [] when it does not exist."""
    if is_gcs(directory):
        bucket, prefix = _split_gcs(directory.rstrip("/") + "/")
        blobs = _gcs_client().list_blobs(bucket, prefix=prefix, delimiter="/")
        return [f"gs://{bucket}/{b.name}" for b in blobs if b.name != prefix]
    if not os.path.isdir(directory):
        return []
    return [os.path.join(directory, n) for n in sorted(os.listdir(directory)) if os.path.isfile(os.path.join(directory, n))]


def delete(path: str) -> None:
    """Remove a file; absent files are fine."""
    if is_gcs(path):
        from google.api_core import exceptions

        try:
            _blob(path).delete()
        except exceptions.NotFound:
            pass
        return
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def make_dirs(directory: str) -> None:
    """Create a local folder and its parents (gs:// has no folders)."""
    if not is_gcs(directory):
        os.makedirs(directory, exist_ok=True)


def remove_empty_dir(directory: str) -> None:
    """Remove a local folder if it is empty (gs:// has no folders)."""
    if not is_gcs(directory):
        try:
            os.rmdir(directory)
        except OSError:
            pass


def temp_path(final_path: str) -> str:
    """A unique temporary name for `final_path`, in `_tmp/` beside it (never matches a shard glob)."""
    return join(dirname(final_path), TMP_DIR, f"{basename(final_path)}.{uuid.uuid4().hex}.tmp")


def _write(path: str, data: bytes) -> None:
    if is_gcs(path):
        _blob(path).upload_from_file(io.BytesIO(data), size=len(data))
        return
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _rename(src: str, dst: str) -> None:
    if is_gcs(src):
        client = _gcs_client()
        sb, sn = _split_gcs(src)
        db, dn = _split_gcs(dst)
        bucket = client.bucket(sb)
        bucket.copy_blob(bucket.blob(sn), client.bucket(db), dn)
        bucket.blob(sn).delete()
        return
    os.replace(src, dst)


def write_temp(final_path: str, data: bytes) -> str:
    """Write `data` under a temporary name for `final_path`; returns that name (see `publish`)."""
    tmp = temp_path(final_path)
    make_dirs(dirname(tmp))
    _write(tmp, data)
    return tmp


def publish(tmp: str, final_path: str) -> None:
    """Rename a complete temporary file onto its final name (replacing an older one)."""
    _rename(tmp, final_path)


def write_atomic(final_path: str, data: bytes) -> None:
    """Write a whole file so that it appears under `final_path` complete or not at all."""
    publish(write_temp(final_path, data), final_path)
