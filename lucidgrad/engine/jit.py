"""The JIT: `@jit` runs a function normally once (warm-up: everything compiles), records the kernels and copies the
second call runs, and from then on replays that list on the new inputs' buffers -- no graph building, no scheduling,
no compiling. Inputs whose shape, dtype or device differ from the capture raise JitError."""
from __future__ import annotations
import functools, time
from dataclasses import dataclass
from typing import Callable
from lucidgrad.helpers import DEBUG, GlobalCounters
from lucidgrad.device import Buffer, buffer_of

class JitError(RuntimeError): pass

@dataclass
class _Step:
  run: Callable[[list[Buffer]], float]
  bufs: list[Buffer]
  name: str

# run_schedule appends a _Step here for everything it runs while a capture is open
capturing: list[list[_Step]] = []

def record(run: Callable[[list[Buffer]], float], bufs: list[Buffer], name: str):
  """Called by run_schedule for every kernel and copy it runs: appended to the open capture, if any."""
  if capturing: capturing[-1].append(_Step(run, bufs, name))

def _tensors_in(x) -> list:
  from lucidgrad.tensor import Tensor
  if isinstance(x, Tensor): return [x]
  if isinstance(x, (list, tuple)): return [t for v in x for t in _tensors_in(v)]
  if isinstance(x, dict): return [t for v in x.values() for t in _tensors_in(v)]
  return []

def _static(x):
  """The arguments with every tensor replaced by a marker: what a replay cannot change, compared call to call."""
  from lucidgrad.tensor import Tensor
  if isinstance(x, Tensor): return Tensor
  if isinstance(x, (list, tuple)): return type(x)(_static(v) for v in x)
  if isinstance(x, dict): return {k: _static(v) for k, v in x.items()}
  return x

def _rebuild(x, fresh: dict):
  """The returned structure with each captured output tensor replaced by a fresh view of its buffer."""
  from lucidgrad.tensor import Tensor
  if isinstance(x, Tensor): return Tensor(fresh[id(x)])
  if isinstance(x, (list, tuple)): return type(x)(_rebuild(v, fresh) for v in x)
  if isinstance(x, dict): return {k: _rebuild(v, fresh) for k, v in x.items()}
  return x

class Jit:
  """A jitted function: call 1 runs it (everything compiles), call 2 captures its kernels, later calls replay them.
  Replays return tensors that view the captured output buffers: the next replay overwrites them."""
  def __init__(self, fn: Callable):
    self.fn, self.calls = fn, 0
    self.steps: list[_Step] | None = None
    functools.update_wrapper(self, fn)

  def _inputs(self, args, kwargs) -> list:
    """The tensor arguments, each realized into a plain buffer: those buffers are what a replay swaps in."""
    from lucidgrad.tensor import Tensor
    from lucidgrad.schedule import is_buffer_view
    ins = _tensors_in(list(args) + list(kwargs.values()))
    if (pending := [t for t in ins if not is_buffer_view(t.uop)]): Tensor.realize(*pending)
    return ins

  def __call__(self, *args, **kwargs):
    from lucidgrad.tensor import Tensor
    ins = self._inputs(args, kwargs)
    sig = [(t.shape, t.dtype, t.device) for t in ins]
    static = _static((args, kwargs))
    self.calls += 1
    if self.calls == 1:  # warm-up: compile everything, capture nothing
      out = self.fn(*args, **kwargs)
      if (outs := _tensors_in(out)): Tensor.realize(*outs)
      return out
    if self.steps is None:
      capturing.append([])
      try:
        out = self.fn(*args, **kwargs)
        if (outs := _tensors_in(out)): Tensor.realize(*outs)
      finally: steps = capturing.pop()
      self.steps, self.sig, self.static, self.out = steps, sig, static, out
      self.in_bufs = [buffer_of(t.uop.base) for t in ins]
      self.out_uops = {id(t): t.uop for t in _tensors_in(out)}
      if DEBUG >= 1: print(f"jit: captured {len(steps)} steps of {getattr(self.fn, '__name__', 'fn')}")
      return out
    if sig != self.sig:
      raise JitError(f"jit: {getattr(self.fn, '__name__', 'fn')} was captured for inputs {self.sig} and now gets {sig}; "
                     "a jitted function needs the same shapes, dtypes and devices on every call (make a new jit for new shapes)")
    try: same = bool(static == self.static)
    except Exception: same = False  # values that cannot be compared (arrays) count as changed
    if not same:
      raise JitError(f"jit: {getattr(self.fn, '__name__', 'fn')} was captured with the non-tensor arguments {self.static!r} and now gets "
                     f"{static!r}; a replay cannot change them (they were baked into the kernels): pass values that change as Tensors")
    swap = {id(old): buffer_of(t.uop.base) for old, t in zip(self.in_bufs, ins)}
    st = time.perf_counter()
    for s in self.steps:
      et = s.run([swap.get(id(b), b) for b in s.bufs])
      GlobalCounters.kernel_count += 1
      GlobalCounters.time_sum_s += et
    if DEBUG >= 2: print(f"jit: replayed {len(self.steps)} steps in {(time.perf_counter()-st)*1e3:.2f} ms")
    return _rebuild(self.out, self.out_uops)

def jit(fn: Callable) -> Jit:
  """Decorator: capture the kernels of `fn` on its second call and replay them on later calls."""
  return Jit(fn)
