"""torch.cuda's questions, for `import lucidgrad as torch` scripts: is there a GPU, how many. Asking opens nothing but
the driver (the device itself opens on its first tensor); a machine without cuda-bindings or a driver answers no."""
from __future__ import annotations
import functools

@functools.cache
def device_count() -> int:
  """The CUDA devices the driver sees; 0 where cuda-bindings, the driver or a GPU is missing."""
  try:
    from cuda.bindings import driver
    status, = driver.cuInit(0)
    if int(status) != 0: return 0
    status, count = driver.cuDeviceGetCount()
    return int(count) if int(status) == 0 else 0
  except Exception: return 0  # no package, no library, no driver: every one of them means no GPU to use

def is_available() -> bool:
  """torch.cuda.is_available: whether a CUDA device can be used here."""
  return device_count() > 0

def synchronize(device: str | None = None) -> None:
  """Wait for the work queued on a CUDA device (lucidgrad's host reads already wait for what they read)."""
  from lucidgrad.device import Device
  Device[device or "CUDA"].synchronize()
