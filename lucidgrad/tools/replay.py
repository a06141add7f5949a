"""Process replay: record the source of every kernel a set of programs builds, and diff two recordings.
With $REPLAY_RECORD set to a folder, each kernel codegen builds is written there, one file per kernel, named by a hash
of the device and the kernel's structural key (so the same kernel from another commit lands in the same file)."""
from __future__ import annotations
import os, pathlib
from lucidgrad.helpers import content_hash

def kernel_text(device: str, spec) -> str:
  """What is compared: the name, the opts and the source (for the PYTHON device, its linear program as text)."""
  body = spec.src if device.split(":")[0] != "PYTHON" else "\n".join(f"{i:4d} {u.op.name} {u.dtype} {u.arg!r}" for i, u in enumerate(spec.uops))
  return f"// {spec.name} on {device}\n// opts {list(spec.opts)}\n{body}\n"

def save(device: str, ast, spec, folder: str | None = None) -> None:
  out = pathlib.Path(folder or os.environ["REPLAY_RECORD"])
  out.mkdir(parents=True, exist_ok=True)
  path = out / f"{content_hash(device.split(':')[0], ast.key)}.txt"
  tmp = path.with_suffix(f".{os.getpid()}.tmp")
  tmp.write_text(kernel_text(device, spec))
  os.replace(tmp, path)  # atomic: parallel test workers may write the same kernel
