"""Where the tensors live and in what precision: ``--device`` and ``--precision``, checked once, used everywhere.

``auto`` picks CUDA, then Apple's MPS, then the CPU. A device that torch cannot see is refused with one line naming
what torch does see, before any model is loaded. ``--precision`` sets ``torch.autocast`` for scoring and for non-DP
training: ``fp32`` (the default, and the only one that reproduces the CPU's numbers bit for bit), ``bf16`` (CUDA,
MPS, and the CPU, where autocast supports it) and ``fp16`` (CUDA and MPS only; training scales the loss). DP-SGD
keeps fp32: its per-example clipping and noise have been checked in fp32 only.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from privaudit.errors import PrivauditError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _torch() -> str:
    return f"torch {torch.__version__}"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """The torch device that ``--device NAME`` means here.

    Args:
        name: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Raises:
        PrivauditError: an unknown name, or a device torch does not see (the message names what it does see).
    """
    spec = str(name).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise PrivauditError(f"--device mps: MPS is not available ({_torch()}); use --device cpu or auto")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if match is None:
        raise PrivauditError(f"--device '{name}' is unknown; use {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise PrivauditError(f"--device {name}: CUDA is not available ({_torch()}); use --device cpu or auto")
    count = torch.cuda.device_count()
    index = int(match.group(1)) if match.group(1) is not None else torch.cuda.current_device()
    if index >= count:
        raise PrivauditError(
            f"--device {name}: no such GPU; torch sees {count} (cuda:0 to cuda:{count - 1}, {_torch()})"
        )
    return torch.device("cuda", index)


def check_precision(precision: str, device_type: str, *, dp: bool = False) -> str:
    """Refuse a precision the device (``"cpu"``, ``"cuda"``, ``"mps"``) or DP-SGD cannot use; return it.

    Raises:
        PrivauditError: an unknown precision, fp16 on the CPU, or reduced precision with DP-SGD.
    """
    if precision not in PRECISIONS:
        raise PrivauditError(f"--precision '{precision}' is unknown; use one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device_type == "cpu":
        raise PrivauditError("--precision fp16 needs a CUDA or MPS device; on the CPU use fp32 or bf16")
    if dp and precision != "fp32":
        raise PrivauditError(
            f"--precision {precision} with --dp: DP-SGD trains in fp32 only (its per-example clipping is checked in "
            "fp32); drop --precision"
        )
    return precision


@dataclass(frozen=True)
class Compute:
    """A checked device and precision.

    Attributes:
        device: where models and tensors go.
        precision: ``fp32``, ``bf16`` or ``fp16``: the autocast dtype of scoring and non-DP training.
    """

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"

    @classmethod
    def from_flags(cls, device: str = "cpu", precision: str = "fp32", *, dp: bool = False) -> Compute:
        """``--device`` and ``--precision``, checked.

        Raises:
            PrivauditError: a device torch does not see, or a precision it cannot use.
        """
        resolved = resolve_device(device)
        return cls(device=resolved, precision=check_precision(precision, resolved.type, dp=dp))

    @property
    def dtype(self) -> torch.dtype:
        return PRECISIONS[self.precision]

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` in the reduced precision; nothing at all for fp32, so fp32 runs exactly as before."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def generator(self, seed: int) -> torch.Generator:
        """A seeded generator on the device (noise drawn on a GPU needs a GPU generator)."""
        return torch.Generator(device=self.device).manual_seed(seed)

    def to_dict(self) -> dict:
        """What the reports and ``privaudit.json`` record."""
        return {"device": describe(self.device), "precision": self.precision, "torch": torch.__version__}


def describe(device: torch.device) -> str:
    """``cpu``, ``mps`` or ``cuda:0 (NVIDIA H200)``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (``None``: as it is), then restore the setting."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


CPU = Compute()
