"""An exchange folder: runs on several machines share their bests through files (docs/loop.md, "Runs on
several machines").

Each run that has `loop.exchange` set writes its best to `<exchange>/<tag>@<host>.json` whenever it changes:
its measured runs, its budget, the task's protocol and the content of its editable files. Other runs read
the folder and may take a best up (`Loop._adopt`), to be run and judged there. A folder every machine can
reach (NFS, or one that a sync tool mirrors) is all it needs: an entry is written to a temporary file and
renamed into place, so a reader sees a whole entry or the one before it, and a file that does not parse, or
that another task wrote (its `protocol.ident` differs), is passed over.

Pure functions for the entry's content; `publish` and `read_offers` do the file I/O.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

FORMAT = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")


@dataclass(frozen=True)
class Offer:
    """Another run's best, as this run may take it up: from the store of this folder (`commit` set) or from
    the exchange folder (`files` set)."""

    source: str  # the run's name: its tag here, `<tag>@<host>` in the exchange folder
    seq: int
    description: str
    runs: tuple[float, ...]  # its measured runs
    code_hash: str | None
    commit: str | None = None
    files: dict | None = None  # editable path -> content (bytes)

    @property
    def value(self) -> float:
        return sum(self.runs) / len(self.runs)


def best_offer(offers: list[Offer], our_value: float, margin: float, *, maximize: bool = False) -> Offer | None:
    """The offer that beats `our_value` (this run's best, as measured) by the most, if by more than `margin`;
    None if none does. The first of equals wins."""
    sign = 1.0 if maximize else -1.0
    chosen, chosen_gain = None, margin
    for offer in offers:
        gain = sign * (offer.value - our_value)
        if gain > chosen_gain:
            chosen, chosen_gain = offer, gain
    return chosen


def entry_name(tag: str, host: str | None = None) -> str:
    """This run's name in the exchange folder: `<tag>@<host>`, made safe for a file name."""
    return _UNSAFE.sub("-", f"{tag}@{host or socket.gethostname()}")


def entry(name: str, protocol: str, best_seq: int, description: str, runs: list[float], code_hash: str | None,
          files: dict[str, bytes]) -> dict:
    """The JSON-ready content of an exchange entry."""
    return {"format": FORMAT, "name": name, "protocol": protocol, "seq": best_seq, "description": description,
            "runs": list(runs), "code_hash": code_hash,
            "files": {path: base64.b64encode(content).decode("ascii") for path, content in sorted(files.items())}}


def offer_from(data: dict, protocol: str) -> Offer | None:
    """The offer an entry makes; None for an entry of another format or protocol, or a malformed one."""
    try:
        if data.get("format") != FORMAT or data.get("protocol") != protocol:
            return None
        runs = tuple(float(v) for v in data["runs"])
        files = {str(path): base64.b64decode(content, validate=True) for path, content in data["files"].items()}
        if not runs or not files:
            return None
        return Offer(source=str(data["name"]), seq=int(data["seq"]), description=str(data["description"]),
                     runs=runs, code_hash=data.get("code_hash"), files=files)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def publish(folder: Path, content: dict) -> Path:
    """Write an entry into the exchange `folder` (created if missing) as a whole: a temporary file, flushed,
    then renamed over the entry."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{content['name']}.json"
    fd, tmp = tempfile.mkstemp(prefix=f".{content['name']}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(content, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_offers(folder: Path, protocol: str, *, exclude: str) -> list[Offer]:
    """The offers of the exchange `folder` for this protocol, but for the entry named `exclude` (this run's
    own). Files that cannot be read or parsed are passed over: a partial copy by a sync tool, say."""
    offers = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.stem == exclude:
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        offer = offer_from(data, protocol) if isinstance(data, dict) else None
        if offer is not None:
            offers.append(offer)
    return offers
