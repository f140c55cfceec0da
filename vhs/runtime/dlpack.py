"""DLPack hand-offs between engines on the GPU path of the orchestrator.

An engine's output reaches the orchestrator as a device tensor (torch, through DLPack); the
orchestrator may index it on the device (the winner's row, the prompt embeddings repeated once per
candidate) and hands the result to the next engine's BLS request with `pb_utils.Tensor.from_dlpack`.
That engine reads the memory from its own process through CUDA IPC, which no CUDA stream of this
process orders. So a hand-off:

- passes the tensor *object*, not a DLPack capsule: for an object with `__dlpack__` the Python
  backend asks the producer to order its stream before exporting; a capsule carries no stream and is
  taken as is (a torch gather still running on the orchestrator's stream would be read half-written);
- and synchronises the producing stream first, so every kernel that wrote the tensor has finished
  before another process can read it.

torch is imported only here and only for device tensors; host arrays never reach this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def synchronize_producer(tensor: Any) -> None:
    """Block until the current CUDA stream of `tensor`'s device has finished (no-op off the GPU)."""
    if getattr(tensor, "is_cuda", False):
        import torch

        torch.cuda.current_stream(tensor.device).synchronize()


def device_handoff(tensor: Any) -> Any:
    """What `pb_utils.Tensor.from_dlpack` is given for a device tensor: the contiguous tensor object
    itself (it has `__dlpack__`), once the stream that wrote it has finished."""
    tensor = tensor.contiguous()
    synchronize_producer(tensor)
    return tensor


def from_engine(tensor: Any) -> Any:
    """A device output of an engine (a `pb_utils.Tensor` in GPU memory) as a torch tensor, through
    the object's own `__dlpack__` (its stream protocol) where the stub has it, else its capsule (the
    engine's execution finished before its response was handed back)."""
    from torch.utils.dlpack import from_dlpack

    return from_dlpack(tensor if hasattr(tensor, "__dlpack__") else tensor.to_dlpack())


def concatenate_rows(parts: list) -> Any:
    """Row chunks of one engine call (numpy arrays or device tensors) joined along the batch axis."""
    if all(isinstance(part, np.ndarray) for part in parts):
        return np.concatenate(parts)
    import torch

    return torch.cat([torch.as_tensor(part) for part in parts])
