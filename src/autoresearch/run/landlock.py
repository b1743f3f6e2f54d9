"""Landlock, the Linux kernel's unprivileged access control: the sandbox's layer where bubblewrap cannot run.

A process restricts itself (and everything it starts) to a set of rules, and cannot undo it:
- file access only beneath the folders and files a rule names, with that rule's rights; everything
  else cannot be opened, listed or executed;
- (kernel ABI 4+) no TCP: neither connecting nor listening, loopback included;
- (ABI 6+) no signals to processes outside the sandbox (the harness), and no abstract unix sockets
  outside it.

This module is only the mechanism: `Ruleset` says what is allowed, `restrict_self` applies it in the
child between fork and exec. What a candidate may reach is decided in `sandbox.py`.
"""

from __future__ import annotations

import ctypes
import functools
import os
import stat
import sys
from dataclasses import dataclass

# System call numbers: the same on every architecture Linux added them for (5.13).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# File system rights (the kernel ABI that added each).
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER = 1 << 13  # ABI 2: link or rename across folders
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5: ioctl on device files
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # the rights a rule on a file may hold

READ = EXECUTE | READ_FILE | READ_DIR
WRITE = READ | WRITE_FILE | TRUNCATE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO \
    | MAKE_SYM | REFER
DEVICES = READ_FILE | WRITE_FILE | READ_DIR | IOCTL_DEV  # /dev: open device nodes (GPU, /dev/null) and use them

_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6


class LandlockError(OSError):
    """The rules could not be applied; the child must not run unrestricted."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


@functools.cache
def abi() -> int:
    """The Landlock ABI version this kernel offers; 0 where there is none (older kernel, disabled, not Linux)."""
    libc = _libc()
    if libc is None:
        return 0
    version = libc.syscall(ctypes.c_long(_CREATE_RULESET), None, ctypes.c_size_t(0),
                           ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(version), 0)


def handled_fs(version: int) -> int:
    """Every file system right the kernel of `version` knows: all of them are denied unless a rule grants them."""
    rights = (1 << 13) - 1
    if version >= 2:
        rights |= REFER
    if version >= 3:
        rights |= TRUNCATE
    if version >= 5:
        rights |= IOCTL_DEV
    return rights


@dataclass(frozen=True)
class Ruleset:
    """What a restricted process may do: `(path, rights)` pairs, each granting its rights beneath that path
    (a file's rule is cut to the rights a file can have); TCP only with `network`."""

    rules: tuple[tuple[str, int], ...]
    network: bool = False

    def to_json(self) -> dict:
        return {"rules": [list(rule) for rule in self.rules], "network": self.network}

    @classmethod
    def from_json(cls, data: dict) -> Ruleset:
        return cls(rules=tuple((str(path), int(rights)) for path, rights in data["rules"]),
                   network=bool(data["network"]))


def prepare() -> None:
    """Load what `restrict_self` calls, in the parent: between fork and exec only system calls are safe."""
    abi()


def restrict_self(ruleset: Ruleset) -> None:
    """Restrict this process for good (run it in the child between fork and exec). LandlockError if it
    cannot, so the child never runs unrestricted by mistake."""
    libc, version = _libc(), abi()
    if libc is None or version < 1:
        raise LandlockError("Landlock is not available on this kernel")
    handled = handled_fs(version)
    attr = _RulesetAttr(handled, 0, 0)
    size = 8
    if version >= 4:
        size = 16
        attr.handled_access_net = 0 if ruleset.network else _NET_BIND_TCP | _NET_CONNECT_TCP
    if version >= 6:
        size = 24
        attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
    ruleset_fd = libc.syscall(ctypes.c_long(_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size),
                              ctypes.c_uint32(0))
    if ruleset_fd < 0:
        raise LandlockError(ctypes.get_errno(), f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        for path, rights in ruleset.rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # gone since the rules were made: nothing to grant
            try:
                allowed = rights & handled
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    allowed &= FILE_RIGHTS
                if not allowed:
                    continue
                beneath = _PathBeneathAttr(allowed, fd)
                if libc.syscall(ctypes.c_long(_ADD_RULE), ctypes.c_int(ruleset_fd), ctypes.c_int(_RULE_PATH_BENEATH),
                                ctypes.byref(beneath), ctypes.c_uint32(0)) != 0:
                    err = ctypes.get_errno()
                    raise LandlockError(err, f"landlock_add_rule({path}): {os.strerror(err)}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise LandlockError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")
        if libc.syscall(ctypes.c_long(_RESTRICT_SELF), ctypes.c_int(ruleset_fd), ctypes.c_uint32(0)) != 0:
            err = ctypes.get_errno()
            raise LandlockError(err, f"landlock_restrict_self: {os.strerror(err)}")
    finally:
        os.close(ruleset_fd)
