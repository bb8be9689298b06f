"""Images on shared or object storage: manifest URLs read through fsspec into a local cache.

A manifest's ``image`` or ``mask`` may be a URL that fsspec understands (``s3://``, ``gs://``,
``az://``, ``file://``, ...). :meth:`RemoteCache.local` turns such a reference into a local
copy, so SimpleITK, pydicom, nibabel and the integrity check
(:mod:`gastrorad.io.integrity`) read local files exactly as for a plain path. A DICOM series
folder at a URL is listed and every file under it fetched.

Cache layout: ``<root>/<BLAKE2b of the URL>/<version>/<name>``, where ``name`` is the
object's own file name (or the folder's name, with its tree below) so readers that choose the
format by suffix and :func:`gastrorad.preprocess.cache.file_digest` see the same name as a
local file, and ``version`` hashes what the storage reports about the object (size and
ETag, mtime, generation, ... for each file). A changed object gets a new version folder (the
older one is removed); an unchanged one is found again with one listing request and no
download. A copy is fetched into a ``.partial.`` folder and renamed into place, so workers
that cache the same URL at once never see half a file: the first rename wins and the others
discard their copy.

Credentials and endpoints come from the environment and fsspec's own configuration
(``AWS_*`` variables, ``FSSPEC_S3_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...) or
from per-protocol ``storage_options`` (the study's ``data.storage_options``); URLs are not
logged above DEBUG, and then only by hash, since they may name patients.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from gastrorad.errors import InputError, Problem
from gastrorad.io.atomic import TEMP_PREFIX, _umask
from gastrorad.io.integrity import detached_data_file
from gastrorad.io.safe_paths import inside

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: Fields of an fsspec ``info`` record that change when an object's bytes change (any case).
_VERSION_FIELDS = {"size", "etag", "mtime", "lastmodified", "last_modified", "updated", "generation", "md5hash",
                   "versionid", "content_md5"}
_log = logging.getLogger("gastrorad.remote")
#: Cached copy -> URL, for the copies this process resolved: problems name the URL the user wrote.
_WRITTEN: dict[str, str] = {}


def is_url(ref: str) -> bool:
    """True when ``ref`` (an image or mask reference, maybe with a ``#selector``) is a URL (``scheme://``)."""
    return bool(_URL.match(str(ref)))


def split_url(ref: str) -> tuple[str, str]:
    """``'s3://b/folder#1.2.3'`` -> ``('s3://b/folder', '#1.2.3')``: the URL and its selector suffix (or '')."""
    url, sep, selector = str(ref).rpartition("#")
    return (url, sep + selector) if sep else (str(ref), "")


def protocol_problem(url: str) -> str | None:
    """Why ``url``'s protocol cannot be read here (unknown, or its package is not installed), or None."""
    from fsspec.registry import get_filesystem_class, known_implementations
    protocol = str(url).split("://", 1)[0].lower()
    try:
        get_filesystem_class(protocol)
    except ImportError as exc:
        missing = getattr(exc.__cause__, "name", None) or known_implementations[protocol]["class"].split(".")[0]
        return f"{protocol}:// needs {missing}: pip install {missing}"
    except ValueError:
        return (f"unknown storage protocol '{protocol}://' (fsspec knows s3://, gs://, az://, file://, http(s):// "
                "and others)")
    return None


def as_written(file: str) -> str:
    """``file`` as the manifest names it: a cached copy (or a file inside a cached folder) resolved by
    :meth:`RemoteCache.local` in this process becomes its URL; anything else is returned unchanged."""
    path = Path(file)
    for p in (path, *path.parents):
        if str(p) in _WRITTEN:
            rest = path.relative_to(p).as_posix()
            return _WRITTEN[str(p)] + ("" if rest == "." else "/" + rest)
    return file


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/gastrorad/remote`` (``~/.cache/gastrorad/remote``): the cache of library calls
    that name no folder; a study run uses ``data.remote_cache`` (default ``<output>/cache/remote``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gastrorad" / "remote"


@dataclass(frozen=True)
class RemoteCache:
    """Local copies of images and masks given as URLs.

    Args:
        root: Cache folder (default :func:`default_cache_root`).
        storage_options: fsspec options per protocol, e.g. ``{"s3": {"endpoint_url": "http://minio:9000"}}``;
            merged over fsspec's configuration (``FSSPEC_<PROTOCOL>_<OPTION>`` variables).

    Picklable, so per-patient workers (processes or Dask) each resolve their own rows.
    """

    root: Path = field(default_factory=default_cache_root)
    storage_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def local(self, ref: str, *, column: str | None = None) -> str:
        """A local path for ``ref``: unchanged when it is not a URL, else the path of a current cached copy
        (fetched when missing or out of date), with ``ref``'s ``#selector`` kept.

        Raises :class:`~gastrorad.errors.InputError` naming the URL (and ``column``) when the object does
        not exist, the protocol is unknown or not installed, or storage cannot be read.
        """
        if not ref or not is_url(ref):
            return ref
        url, selector = split_url(ref)
        fs, path = self._filesystem(url, column)
        kind, entries = _listing(fs, path, url, column)
        folder = Path(self.root) / _hash(url, 24)
        target = folder / _version(entries)
        name = _name(path)
        if not (target / name).exists():
            _fetch(fs, path, kind, entries, folder, target.name, name, url, column)
            _remove_other_versions(folder, target.name)
        _WRITTEN[str(target / name)] = url
        return str(target / name) + selector

    def fingerprint(self, ref: str) -> str:
        """What the storage reports about ``ref``'s bytes (one listing, no download): part of stage keys."""
        url, _ = split_url(ref)
        fs, path = self._filesystem(url, None)
        return _version(_listing(fs, path, url, None)[1])

    def _filesystem(self, url: str, column: str | None):
        reason = protocol_problem(url)
        if reason:
            raise InputError(Problem(url, reason, column=column))
        from fsspec.core import url_to_fs
        protocol = url.split("://", 1)[0].lower()
        try:
            return url_to_fs(url, **dict(self.storage_options.get(protocol, {})))
        except Exception as exc:  # bad options, unreachable credential service: the user's setting to fix
            raise InputError(Problem(url, f"cannot open storage: {_short(exc)}", column=column)) from exc


def _listing(fs, path: str, url: str, column: str | None) -> tuple[str, dict[str, dict]]:
    """``('file', {name: info})`` or ``('directory', {relative path: info})`` for every file under ``path``."""
    try:
        fs.invalidate_cache(path)  # a long-lived process must see an object that changed
        info = fs.info(path)
        if info.get("type") != "directory":
            return "file", {_name(path): info}
        prefix = path.rstrip("/") + "/"
        entries = {p[len(prefix):]: i for p, i in fs.find(path, detail=True).items()
                   if i.get("type", "file") == "file" and p.startswith(prefix)}
    except FileNotFoundError as exc:
        raise InputError(Problem(url, "file or folder does not exist", column=column)) from exc
    except Exception as exc:
        raise InputError(Problem(url, f"cannot read from storage: {_short(exc)}", column=column)) from exc
    if not entries:
        raise InputError(Problem(url, "folder is empty", column=column))
    return "directory", entries


def _fetch(fs, path: str, kind: str, entries: dict[str, dict], folder: Path, version: str, name: str, url: str,
           column: str | None) -> None:
    """Download into a ``.partial.`` folder beside ``folder/version``, check sizes, rename into place.

    A MetaImage or detached NRRD header brings the data file it names (fetched beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{version}.", dir=folder))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        base, root = (posixpath.dirname(path), tmp) if kind == "file" else (path.rstrip("/"), tmp / name)
        files = [(posixpath.join(base, rel), rel, entries[rel]) for rel in sorted(entries)]
        _log.debug("remote cache: fetching %d file(s) of %s", len(files), _hash(url, 24))
        _get(fs, files, root, url, column)
        companion = detached_data_file(tmp / name) if kind == "file" else None
        if companion:
            rpath = posixpath.normpath(posixpath.join(base, companion))
            _get(fs, [(rpath, companion, _info(fs, rpath, url, column))], root, url, column)
        try:
            os.replace(tmp, folder / version)
        except OSError:
            if not (folder / version / name).exists():  # not a lost race with another worker
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _get(fs, files: list[tuple[str, str, dict]], root: Path, url: str, column: str | None) -> None:
    """Fetch ``(remote path, relative local path, info)`` under ``root``; every copy must have its listed size."""
    try:
        pairs = [(rpath, inside(root, *rel.split("/"))) for rpath, rel, _ in files]
    except ValueError as exc:  # a key such as '../x' would land outside the cache
        raise InputError(Problem(url, f"refused: {exc}", column=column)) from exc
    try:
        _download(fs, pairs)
    except FileNotFoundError as exc:
        raise InputError(Problem(url, "file or folder does not exist", column=column)) from exc
    except Exception as exc:
        raise InputError(Problem(url, f"cannot read from storage: {_short(exc)}", column=column)) from exc
    for (rpath, local), (_, _, info) in zip(pairs, files):
        size = info.get("size")
        if size is not None and local.stat().st_size != int(size):
            raise InputError(Problem(url, f"download incomplete: {local.stat().st_size} of {size} bytes of "
                                     f"{posixpath.basename(rpath)}", column=column))


def _info(fs, rpath: str, url: str, column: str | None) -> dict:
    try:
        return fs.info(rpath)
    except FileNotFoundError as exc:
        raise InputError(Problem(url, f"its data file {posixpath.basename(rpath)} does not exist beside it",
                                 column=column)) from exc
    except Exception as exc:
        raise InputError(Problem(url, f"cannot read from storage: {_short(exc)}", column=column)) from exc


def _download(fs, pairs: list[tuple[str, Path]]) -> None:
    """Copy remote files to local paths in one batched ``get`` (concurrent on async filesystems)."""
    for _, local in pairs:
        local.parent.mkdir(parents=True, exist_ok=True)
    fs.get([r for r, _ in pairs], [str(p) for _, p in pairs])


def _remove_other_versions(folder: Path, keep: str) -> None:
    """Drop copies of earlier versions of the object (best effort; never ``.partial.`` folders in use)."""
    for p in folder.iterdir():
        if p.name != keep and not p.name.startswith(TEMP_PREFIX):
            shutil.rmtree(p, ignore_errors=True)


def _version(entries: dict[str, dict]) -> str:
    stamp = {rel: {k: _plain(v) for k, v in sorted(info.items()) if k.lower() in _VERSION_FIELDS}
             for rel, info in sorted(entries.items())}
    return _hash(json.dumps(stamp, sort_keys=True, default=str), 16)


def _plain(value):
    return value.timestamp() if isinstance(value, _dt.datetime) else value


def _name(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) or "root"


def _hash(text: str, n: int) -> str:
    return hashlib.blake2b(text.encode(), digest_size=n // 2).hexdigest()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
