"""The ONNX operator registry: op functions keyed by (domain, op_type), each valid from an opset version on.

An op function is `fn(ctx, inputs: list, attrs: dict) -> list`: inputs are Tensors (None where an optional input is
omitted, a list for a sequence, ctx.NONE_OPTIONAL for an empty optional, a NumPy object array for strings), attrs plain
Python, and the outputs come back in order. ctx gives opset, device, const(t) (a Tensor's value on the host, for shapes
and axes), run_graph (control ops) and, where the runner has it, num_outputs (Split with no sizes before opset 18).
The family modules (math, nn, reduce, shape, ...) register themselves on import; `lookup` imports them on first use.
"""
from __future__ import annotations
import importlib
from typing import Callable

# (domain, op_type) -> [(since, fn)], kept sorted by since
_registry: dict[tuple[str, str], list[tuple[int, Callable]]] = {}
_FAMILIES = ("math", "logic", "reduce", "shape", "nn", "rnn", "attention", "cast", "quant", "random", "image", "signal", "strings", "training", "ml")
_loaded = False

def onnx_op(op_type: str, since: int = 1, domain: str = "") -> Callable:
  """Decorator: register fn as the implementation of `domain`'s `op_type` for opsets >= `since`."""
  def register(fn: Callable) -> Callable:
    versions = _registry.setdefault(("" if domain == "ai.onnx" else domain, op_type), [])
    versions[:] = sorted([v for v in versions if v[0] != since] + [(since, fn)], key=lambda v: v[0])
    return fn
  return register

def _load_families() -> None:
  global _loaded
  if _loaded: return
  _loaded = True
  for name in _FAMILIES:
    try: importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
      if e.name != f"{__name__}.{name}": raise
  # the ops that run subgraphs or hold sequences and optionals live with the runner (onnx/control.py)
  importlib.import_module("lucidgrad.onnx.control")

def lookup(op_type: str, domain: str, opset: int) -> Callable:
  """The function registered for `op_type` in `domain` with the greatest `since` <= `opset`.

  Raises NotImplementedError naming the op, its domain and the opset when there is none."""
  _load_families()
  versions = _registry.get(("" if domain == "ai.onnx" else domain, op_type), [])
  best = [fn for since, fn in versions if since <= opset]
  if not best:
    have = f" (implemented from opset {versions[0][0]})" if versions else ""
    raise NotImplementedError(f"ONNX op {op_type!r} of domain {domain or 'ai.onnx'!r} at opset {opset} is not supported{have}")
  return best[-1]
