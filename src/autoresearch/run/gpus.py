"""The GPUs a box gets: the NVIDIA device nodes of the GPUs that CUDA_VISIBLE_DEVICES names, and the driver's
control nodes every GPU needs (`gpu_nodes`), so that a candidate cannot reach another loop's GPU under
`--parallel`. The GPUs are read from the driver's folder (/proc/driver/nvidia), MIG devices' parents from
`nvidia-smi -L` (`mig_parents`).

Invariant: what cannot be mapped with certainty gets every node, never too few, and the `problem` is said
(`box_gpu_nodes` logs it once); the box's CUDA_VISIBLE_DEVICES is rewritten so that it names, within the box,
the GPUs it named outside.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.run.view import say_once

log = logging.getLogger(__name__)

NVIDIA_DRIVER = Path("/proc/driver/nvidia")
_GPU_NODE = re.compile(r"nvidia\d+")  # a GPU's own node; the others (nvidiactl, nvidia-uvm, nvidia-caps...) serve all
_PCI_ADDRESS = re.compile(r"([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+)\.([0-7])")
_LEGACY_MIG = re.compile(r"MIG-(GPU-[0-9a-fA-F-]+)/\d+/\d+")  # MIG-GPU-<its GPU's uuid>/<instance>/<compute instance>


# Device nodes through which a CUDA build of torch reaches a GPU: NVIDIA's driver, WSL2's, ROCm's.
GPU_DEVICE_FILES = ("nvidiactl", "nvidia0", "dxg", "kfd")


def may_have_gpu(dev: Path = Path("/dev")) -> bool:
    """False only where no GPU driver's device node exists, so that torch (a second to import) need not be
    asked; True where one might be there (torch then tells)."""
    return any((dev / name).exists() for name in GPU_DEVICE_FILES)


@dataclass(frozen=True)
class GpuNodes:
    """The NVIDIA device nodes a box gets (`gpu_nodes`)."""

    nodes: tuple[str, ...]  # its GPUs' nodes and the control nodes; every node where `problem` is set
    env: dict[str, str] = field(default_factory=dict)  # what the box's environment gets instead of the harness's
    problem: str | None = None  # why it gets every node: what could not be mapped


@dataclass(frozen=True)
class _Gpu:
    address: tuple[int, ...]  # PCI domain, bus, device and function: the order of CUDA_DEVICE_ORDER=PCI_BUS_ID
    minor: int  # its device node is /dev/nvidia<minor>
    uuid: str | None  # GPU-<uuid>, where the driver shows it
    model: str


def gpu_nodes(visible: str | None, driver: Path = NVIDIA_DRIVER, dev: Path = Path("/dev"), *, pci_order: bool = True,
              mig_parents: Mapping[str, str] | None = None) -> GpuNodes:
    """The device nodes (in `dev`) of the GPUs that `visible` names, and the control nodes that every GPU needs.

    `visible` is CUDA_VISIBLE_DEVICES (None: every GPU): indices, GPU-<uuid> (or a unique start of one) or
    MIG-<uuid> entries; an empty or negative entry ends it, as in CUDA. The GPUs are read from the driver's
    folder `driver` (/proc/driver/nvidia: `gpus/<PCI address>/information` gives each one's "Device Minor" and
    "GPU UUID"). Indices count the GPUs in PCI bus order, as CUDA does with CUDA_DEVICE_ORDER=PCI_BUS_ID
    (`pci_order`); otherwise only where the GPUs are all of one model. A MIG device gets its GPU's node and
    nvidia-caps (`mig_parents`: MIG UUID -> its GPU's UUID, from `nvidia-smi -L`; the old form
    MIG-GPU-<uuid>/<gi>/<ci> names it itself). In a box with fewer GPUs' nodes CUDA counts only those, so index
    entries are renamed to the GPUs' UUIDs in the box's environment (`env`), or counted again among its GPUs
    where the driver shows no UUID. What cannot be mapped gets every node, with the `problem` said."""
    every = tuple(sorted(str(node) for node in dev.glob("nvidia*")))
    if visible is None:
        return GpuNodes(every)
    control = tuple(node for node in every if not _GPU_NODE.fullmatch(os.path.basename(node)))
    entries: list[str] = []
    for entry in (e.strip() for e in visible.split(",")):
        if not entry or re.fullmatch(r"-\d+", entry):
            break
        entries.append(entry)
    if not entries:
        return GpuNodes(control)
    gpus = _driver_gpus(driver)
    if isinstance(gpus, str):
        return GpuNodes(every, problem=f"CUDA_VISIBLE_DEVICES={visible}, but {gpus}")
    mig_mode = any((driver / "capabilities").glob("gpu*/mig/gi*"))
    picked: list[_Gpu] = []
    for entry in entries:
        gpu = _gpu_named(entry, gpus, pci_order=pci_order, mig_mode=mig_mode, mig_parents=mig_parents or {})
        if isinstance(gpu, str):
            return GpuNodes(every, problem=f"CUDA_VISIBLE_DEVICES={visible}: {gpu}")
        picked.append(gpu)
    if {gpu.minor for gpu in picked} == {gpu.minor for gpu in gpus}:
        return GpuNodes(every)  # all of them: the environment stays as it is
    own = sorted({str(dev / f"nvidia{gpu.minor}") for gpu in picked} & set(every))
    if all(e.isdigit() for e in entries) and any(gpu.uuid is None for gpu in picked):
        ranks = sorted(set(picked), key=lambda gpu: gpu.address)
        env = {"CUDA_VISIBLE_DEVICES": ",".join(str(ranks.index(gpu)) for gpu in picked),
               "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    elif any(e.isdigit() and gpu.uuid is None for e, gpu in zip(entries, picked, strict=True)):
        return GpuNodes(every, problem=f"CUDA_VISIBLE_DEVICES={visible}: the driver shows no UUID for a GPU it "
                                       "names by index, besides GPUs named by UUID")
    else:
        env = {"CUDA_VISIBLE_DEVICES": ",".join(gpu.uuid if e.isdigit() else e
                                                for e, gpu in zip(entries, picked, strict=True))}
    return GpuNodes(tuple(sorted((*control, *own))), env=env)


def _driver_gpus(driver: Path) -> list[_Gpu] | str:
    """The GPUs the driver's folder lists, in PCI bus order; or what keeps them from being known."""
    infos = sorted((driver / "gpus").glob("*/information"))
    if not infos:
        return f"{driver / 'gpus'} lists no GPU"
    gpus = []
    for info in infos:
        try:
            text = info.read_text(errors="replace")
        except OSError as err:
            return f"{info} cannot be read ({err.strerror})"
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, colon, value = line.partition(":")
            if colon:
                fields.setdefault(key.strip(), value.strip())
        minor = fields.get("Device Minor", "")
        address = _PCI_ADDRESS.fullmatch(fields.get("Bus Location") or info.parent.name)
        if not minor.isdigit() or address is None:
            return f"{info} shows no device minor or PCI address"
        if fields.get("GPU Excluded", fields.get("Blacklisted", "No")).lower().startswith("yes"):
            return f"the driver excludes the GPU at {info.parent.name} (CUDA does not count it)"
        uuid = fields.get("GPU UUID", "")
        gpus.append(_Gpu(address=tuple(int(part, 16) for part in address.groups()), minor=int(minor),
                         uuid=uuid if re.fullmatch(r"GPU-[0-9a-fA-F-]{8,}", uuid) else None,
                         model=fields.get("Model", "")))
    return sorted(gpus, key=lambda gpu: gpu.address)


def _gpu_named(entry: str, gpus: Sequence[_Gpu], *, pci_order: bool, mig_mode: bool,
               mig_parents: Mapping[str, str]) -> _Gpu | str:
    """The GPU that one entry of CUDA_VISIBLE_DEVICES names, or why it is not known."""
    if entry.isdigit():
        if mig_mode:
            return "a GPU here is in MIG mode, where CUDA's indices do not count GPUs"
        if not pci_order and len({gpu.model for gpu in gpus}) > 1:
            return ("without CUDA_DEVICE_ORDER=PCI_BUS_ID, CUDA counts the GPUs fastest first, and these are of "
                    "different models")
        if int(entry) >= len(gpus):
            return f"there are {len(gpus)} GPUs, and {entry} is not one of their indices"
        return gpus[int(entry)]
    uuid = entry
    if entry.upper().startswith("MIG-"):
        legacy = _LEGACY_MIG.fullmatch(entry)
        parents = {parent for mig, parent in mig_parents.items() if mig.lower().startswith(entry.lower())}
        if legacy is None and len(parents) != 1:
            return f"the GPU of the MIG device {entry} is not known (`nvidia-smi -L` lists them)"
        uuid = legacy.group(1) if legacy is not None else parents.pop()
    if uuid.upper().startswith("GPU-"):
        found = [gpu for gpu in gpus if gpu.uuid is not None and gpu.uuid.lower().startswith(uuid.lower())]
        if len(found) == 1:
            return found[0]
        return f"{len(found) or 'no'} GPUs have the UUID {uuid}"
    return f"{entry!r} is neither an index nor a GPU or MIG UUID"


def mig_parents(listing: str) -> dict[str, str]:
    """MIG device UUID -> the UUID of its GPU, from what `nvidia-smi -L` prints (each GPU's line, then its MIG
    devices' lines)."""
    parents: dict[str, str] = {}
    gpu = None
    for line in listing.splitlines():
        found = re.search(r"\(UUID: ((?:GPU|MIG)-[^)\s]+)\)", line)
        if found is None:
            continue
        if found.group(1).startswith("GPU-"):
            gpu = found.group(1)
        elif gpu is not None:
            parents[found.group(1)] = gpu
    return parents


@functools.cache
def _machine_mig_parents() -> dict[str, str]:
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return mig_parents(listed.stdout)


def box_gpu_nodes(env: Mapping[str, str]) -> GpuNodes:
    """`gpu_nodes` on this machine for a box whose environment is `env`; what cannot be mapped is logged once."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    entries = [e.strip() for e in (visible or "").split(",")]
    parents = _machine_mig_parents() if any(e.upper().startswith("MIG-") and not _LEGACY_MIG.fullmatch(e)
                                            for e in entries) else None
    found = gpu_nodes(visible, pci_order=env.get("CUDA_DEVICE_ORDER", "").upper() == "PCI_BUS_ID",
                      mig_parents=parents)
    if found.problem is not None:
        say_once(log, logging.WARNING, "the box gets the device nodes of every GPU, not only its own: %s",
                 found.problem)
    return found

