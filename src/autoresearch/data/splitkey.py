"""The split key: a secret from which the built-in corpus's val and test splits are told.

The built-in corpus is generated from seeds, and candidate code can import this package and read the
task's settings. Were the val and test splits a function of the corpus seed alone, a candidate could
rebuild them byte for byte and train on them. Their documents' seeds therefore also depend on this key:
32 random bytes kept in one file of the data cache (`$AUTORESEARCH_CACHE/split-key`, mode 0600), which
candidates' box never shows (it shows the train split's file only) and coding agents' box covers (it
hides the whole cache). The train split does not depend on the key.

One key serves every task that uses the cache. The file holds the key as 64 hexadecimal digits; a
person may write their own there before `prepare` (`openssl rand -hex 32`), or copy one machine's file
to another to give both the same splits. Datasets, their folders and their manifests name the key by
its id, a one-way digest of it, never by the key itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import stat
from pathlib import Path

from autoresearch.config import cache_root
from autoresearch.data.spec import DataError

log = logging.getLogger(__name__)

FILE_NAME = "split-key"
KEY_BYTES = 32
_ID_DOMAIN = b"autoresearch split key id\0"  # the id is not a digest that could be used as a seed


def key_path() -> Path:
    """Where the key lives: in the data cache, beside the datasets it made."""
    return cache_root() / FILE_NAME


def key_id(key: bytes) -> str:
    """A short public name of `key` (16 hex digits of a SHA-256 of it): what manifests and folders show."""
    return hashlib.sha256(_ID_DOMAIN + key).hexdigest()[:16]


def read(path: Path | None = None) -> bytes | None:
    """The key in `path` (default `key_path()`), or None when there is no such file."""
    path = path or key_path()
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise DataError(f"the split key {path} cannot be read ({err})") from err
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise DataError(f"the split key {path} is not {2 * KEY_BYTES} hexadecimal digits: write a new one "
                        f"(`openssl rand -hex {KEY_BYTES} > {path}`), or delete the file and `autoresearch "
                        "prepare` makes one (either way the val and test splits made with it are new ones)")
    return key


def load() -> bytes:
    """The key, or a clear error when there is none (a new or deleted cache)."""
    key = read()
    if key is None:
        raise DataError(f"no split key in {key_path()} (a new or deleted data cache): run `autoresearch prepare`, "
                        "which makes a new key and with it new val and test splits of the built-in corpus "
                        "(figures measured on the splits of a lost key cannot be compared with the new ones)")
    return key


def ensure() -> bytes:
    """The key, made first if there is none (by `prepare`). Two processes making one at once agree on one."""
    path = key_path()
    key = read(path)
    if key is not None:
        _tighten(path)
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    orphans = sorted(p.name for p in (path.parent / "datasets").glob("builtin-*")
                     if p.is_dir() and ".tmp-" not in p.name)
    _create(path, os.urandom(KEY_BYTES))
    key = read(path)
    assert key is not None
    if orphans:
        log.warning("the split key %s was missing, so a new one (id %s) was made: the built-in corpus gets new "
                    "val and test splits, in a new dataset. The built-in datasets already in the cache (%s) were "
                    "made with a lost key (or none) and can no longer be opened; they may be deleted",
                    path, key_id(key), ", ".join(orphans))
    else:
        log.info("made a new split key in %s (id %s): the val and test splits of the built-in corpus are told "
                 "from it; copy it to another machine's cache to give that machine the same splits",
                 path, key_id(key))
    return key


def _create(path: Path, key: bytes) -> None:
    """Write `key` to `path` unless a key is already there, so that no reader sees half a key."""
    scratch = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(key.hex() + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(scratch, path)  # fails if another process made the key first: then that key is the key
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            with contextlib.suppress(FileExistsError):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="ascii") as f:
                    f.write(key.hex() + "\n")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)


def _tighten(path: Path) -> None:
    """A key file that others may read (one a person wrote with their umask) is made private to its owner."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
            log.info("the split key %s could be read by others (mode %o): made it 0600", path, mode)
    except OSError as err:
        log.warning("the split key %s could not be made private (%s)", path, err)
