"""The JIT: `@jit` runs a function normally once (warm-up: everything compiles), captures the ExecItems (kernels and
copies) the run loop runs during the second call, and from then on runs that list through the same loop on the new
inputs' buffers -- no graph building, no scheduling, no compiling. What a replay cannot honour raises JitError
instead of giving another answer than the eager call would: other input shapes, dtypes, devices or aliasing, other
non-tensor arguments, a host read inside the function, a tensor the capture read that was rebound since.
`jit(fn, verify=True)` (or JIT_VERIFY=1) also runs every replay eagerly and compares every output and every buffer
it writes."""
from __future__ import annotations
import functools, math, time, types
from typing import Callable
import numpy as np
from lucidgrad.helpers import DEBUG, PROFILE, ContextVar, GlobalCounters, live
from lucidgrad.device import Buffer, Compiled, Device, buffer_of, register_buffer
from lucidgrad.uop.ops import UOp, Ops, GroupOp, bound_values
# the run loop appends every ExecItem it runs to each open capture; a replay runs them through it again
from lucidgrad.engine.realize import ExecItem, CompiledRunner, capturing, run_items
from lucidgrad.engine import profile

JIT_VERIFY = ContextVar("JIT_VERIFY", 0)
JIT_GRAPH = ContextVar("JIT_GRAPH", 1)  # 0: a replay launches its kernels one by one, never as a device graph

class JitError(RuntimeError): pass

# the jitted functions whose Python is running (warm-up, capture, or a verifying eager run): host reads are refused
active: list[str] = []

def _tensors_in(x) -> list:
  from lucidgrad.tensor import Tensor
  if isinstance(x, Tensor): return [x]
  if isinstance(x, (list, tuple)): return [t for v in x for t in _tensors_in(v)]
  if isinstance(x, dict): return [t for v in x.values() for t in _tensors_in(v)]
  return []

def _static(x):
  """The arguments with every tensor replaced by a marker and every bound Variable by the Variable: what a replay
  cannot change, compared call to call."""
  from lucidgrad.tensor import Tensor
  if isinstance(x, Tensor): return Tensor
  if isinstance(x, UOp) and x.op is Ops.BIND: return x.src[0]
  if isinstance(x, (list, tuple)): return type(x)(_static(v) for v in x)
  if isinstance(x, dict): return {k: _static(v) for k, v in x.items()}
  return x

def _set_bindings(x):
  """Each bound Variable among the arguments sets the value its Variable's kernels launch with (docs/design/0029)."""
  if isinstance(x, UOp) and x.op is Ops.BIND: bound_values[x.src[0].arg[0]] = x.src[1].arg
  elif isinstance(x, (list, tuple)):
    for v in x: _set_bindings(v)
  elif isinstance(x, dict):
    for v in x.values(): _set_bindings(v)

def _rebuild(x, it):
  """The returned structure with each tensor replaced by the next of `it`."""
  from lucidgrad.tensor import Tensor
  if isinstance(x, Tensor): return next(it)
  if isinstance(x, (list, tuple)): return type(x)(_rebuild(v, it) for v in x)
  if isinstance(x, dict): return {k: _rebuild(v, it) for k, v in x.items()}
  return x

# ---- guards: where the function finds the tensors it reads ----
_SKIP = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type, str, bytes, int, float, bool, np.ndarray)

def _slots(fn, args, kwargs, limit: int = 20000) -> list[tuple[str, object, object, object]]:
  """(path, container, key, tensor) for the tensors reachable from the function's closure cells, the globals its code
  names, a bound method's object and the non-tensor arguments (through attributes, lists, tuples and dicts)."""
  from lucidgrad.tensor import Tensor
  roots: list[tuple[str, object, object]] = []
  f = getattr(fn, "__func__", fn)
  if (obj := getattr(fn, "__self__", None)) is not None: roots.append(("self", None, obj))
  code = getattr(f, "__code__", None)
  for name, cell in zip(getattr(code, "co_freevars", ()), getattr(f, "__closure__", None) or ()):
    try: roots.append((name, cell, cell.cell_contents))
    except ValueError: pass  # an empty cell
  names = set(getattr(code, "co_names", ()))
  for c in getattr(code, "co_consts", ()):  # lambdas and comprehensions inside name globals too
    if isinstance(c, types.CodeType): names |= set(c.co_names)
  gl = getattr(f, "__globals__", {})
  roots += [(n, gl, gl[n]) for n in sorted(names) if n in gl]
  roots += [(f"argument {i}", None, a) for i, a in enumerate(list(args) + list(kwargs.values())) if not isinstance(a, Tensor)]
  out, seen, queue = [], set(), list(roots)
  while queue and len(seen) < limit:
    path, container, x = queue.pop(0)
    if isinstance(x, Tensor):
      if container is not None: out.append((path, container, _key(path), x))
      continue
    if isinstance(x, _SKIP) or id(x) in seen or x is None: continue
    seen.add(id(x))
    if isinstance(x, dict): queue += [(f"{path}[{k!r}]", x, v) for k, v in x.items()]
    elif isinstance(x, (list, tuple)): queue += [(f"{path}[{i}]", x, v) for i, v in enumerate(x)]
    elif hasattr(x, "__dict__") and not callable(x) or hasattr(x, "__dict__") and hasattr(x, "__call__") and not isinstance(x, types.MethodType):
      for k, v in vars(x).items():
        if k in _REGISTRIES and isinstance(v, dict):  # an nn.Module's parameters, buffers, submodules: named as the attributes they are
          seen.add(id(v))
          queue += [(f"{path}.{n}", v, e) for n, e in v.items()]
        else: queue.append((f"{path}.{k}", x, v))
  return out

_REGISTRIES = ("_parameters", "_buffers", "_modules")

def _key(path: str):
  """The last step of a slot's path: an attribute name, a subscript, or the cell itself."""
  if path.endswith("]"):
    k = path[path.rindex("[") + 1:-1]
    return int(k) if k.isdigit() else eval(k, {})  # a repr of a dict key we wrote ourselves: a str or a number
  return path.rsplit(".", 1)[-1]

def _held_in(t) -> Buffer | None:
  """The buffer a replay reads for `t`: its storage, or the one its computed value is cached in (None: not computed,
  or changed since)."""
  from lucidgrad.tensor import _strip
  from lucidgrad.device import buffer_of
  return t._storage if t._storage is not None else buffer_of(_strip(v)) if (v := t._value_view()) is not None else None

def _read_slot(container, key):
  if isinstance(container, types.CellType): return container.cell_contents
  if isinstance(container, (dict, list, tuple)): return container[key]
  return getattr(container, key, None)

# what an unpacking is made of: elementwise math and movements of stored buffers, no reduce, no Variable
_UNPACKING_OPS = frozenset(GroupOp.Elementwise | GroupOp.Movement | {Ops.CONST, Ops.DEVICE, Ops.BUFFER})

def _unpacking(t, in_bufs: list[Buffer]) -> list[Buffer] | None:
  """The buffers a lazy tensor reads, where it is an unpacking: elementwise math and movements of buffers (none an
  input of the call, each at the contents its graph names) that read fewer bytes than the tensor has -- a quantised
  weight's dequantisation (5 bits read for 32 made). Recomputed where it is used, it fuses into its readers, which then
  move those few bytes; realized, every replay would read all of it. Else None."""
  u, bufs, nbytes = t.uop, [], 0
  if not all(isinstance(s, int) for s in u.shape): return None
  for n in u.toposort:
    if n.op not in _UNPACKING_OPS: return None
    if n.op is Ops.BUFFER:
      b = buffer_of(n)
      if b.version != n.arg[2] or any(b is i for i in in_bufs): return None
      bufs.append(b)
      nbytes += b.nbytes
  return bufs if nbytes < math.prod(u.shape) * u.dtype.itemsize else None

class Jit:
  """A jitted function: call 1 runs it (everything compiles), call 2 captures its kernels, later calls replay them.
  Each replay returns new tensors (its outputs get fresh buffers), and the buffers it writes in place (parameters,
  optimiser state, the random key) move to a new version, so lazy values read before the replay keep theirs."""
  def __init__(self, fn: Callable, verify: bool = False):
    self.fn, self.calls, self.verify = fn, 0, verify
    self.items: list[ExecItem] | None = None
    self.graph: GraphReplay | None | bool = None  # built on the first replay; False: the capture cannot be one
    self.unpacked_from: list[tuple[Buffer, int]] = []  # the buffers (and their versions) of the unpackings a capture recomputes
    self.name = getattr(fn, "__name__", "fn")
    functools.update_wrapper(self, fn)

  def _inputs(self, args, kwargs) -> list:
    """The tensor arguments, each computed: their buffers are what a replay swaps in."""
    from lucidgrad.tensor import Tensor
    ins = _tensors_in(list(args) + list(kwargs.values()))
    if (pending := [t for t in ins if t._value_view() is None]): Tensor.realize(*pending)
    return ins

  def _run_fn(self, args, kwargs):
    """The function's Python, with host reads refused; then its outputs and every in-place write it left pending are
    computed, so a capture holds all of its effects (a running stat it updates, state it writes)."""
    from lucidgrad.tensor import Tensor, pending_writes
    if (before := list(pending_writes.values())): Tensor.realize(*before)  # writes from before the call are not the call's
    active.append(self.name)
    try: out = self.fn(*args, **kwargs)
    finally: active.pop()
    if (effects := _tensors_in(out) + list(pending_writes.values())): Tensor.realize(*effects)
    return out

  def __call__(self, *args, **kwargs):
    _set_bindings((args, kwargs))
    ins = self._inputs(args, kwargs)
    in_bufs = [t._buffer_view() for t in ins]
    sig = ([(t.shape, t.dtype, t.device) for t in ins], [next(j for j, c in enumerate(in_bufs) if c is b) for b in in_bufs])
    static = _static((args, kwargs))
    self.calls += 1
    if PROFILE.value:
      st = time.perf_counter_ns()
      try: return self._call(args, kwargs, ins, in_bufs, sig, static)
      finally:
        what = "warm-up" if self.calls == 1 else "capture" if self.calls == 2 else "verified replay" if self.verify or JIT_VERIFY else "replay"
        profile.add_host(f"jit {what} {self.name}", "jit", st, time.perf_counter_ns(), {"items": len(self.items or ())})
    return self._call(args, kwargs, ins, in_bufs, sig, static)

  def _call(self, args, kwargs, ins, in_bufs, sig, static):
    from lucidgrad.device import serials as _serials
    if self.calls == 1: return self._run_fn(args, kwargs)  # warm-up: compile everything, capture nothing
    if self.items is not None and any(b.version != v for b, v in self.unpacked_from):
      self.items, self.graph = None, None  # an unpacking recomputed in the capture read contents written since: capture again
    if self.items is None:
      # a lazy tensor the function finds through a name (closure, global, attribute) is a value of what its inputs held
      # when it was built: computed now, outside the capture, replays read that value (as the eager call would) instead
      # of recomputing it from contents written since -- except an unpacking (_unpacking: a quantised weight's lazy
      # dequantisation), which stays lazy as in the eager call, so each replay's kernels read the few bytes it is made
      # of; its buffers' versions are kept, and a call that finds one written since captures again (docs/design/0033)
      # and every in-place write still pending (on any tensor, found through a name or not) is the program's before the
      # call, not the call's: run now, outside the capture, or each replay would write it again
      from lucidgrad.tensor import Tensor, pending_writes
      lazy = [t for *_, t in _slots(self.fn, args, kwargs) if t._value_view() is None]
      unpacked = {id(t): bufs for t in lazy if (bufs := _unpacking(t, in_bufs)) is not None}
      if (lazy := [t for t in lazy if id(t) not in unpacked] + list(pending_writes.values())): Tensor.realize(*lazy)
      self.unpacked_from = list({id(b): (b, b.version) for bufs in unpacked.values() for b in bufs}.values())
      capturing.append([])
      start = next(_serials)
      try: out = self._run_fn(args, kwargs)
      finally: items = capturing.pop()
      self.start, self.end = start, next(_serials)
      self._finish_capture(items, start, out, ins, in_bufs, sig, static, args, kwargs)
      # the call wrote what an unpacking reads: its replays would recompute it from the new contents, so the next call
      # captures again (by then the value that read the old contents has been computed and is read as a buffer)
      written = {id(ei.bufs[0]) for ei in items}
      if any(b.version != v or id(b) in written for b, v in self.unpacked_from): self.items, self.graph = None, None
      return out
    self._check(sig, static)
    if self.verify or JIT_VERIFY: return self._verified_replay(args, kwargs, ins)
    return self._replay(ins)

  def _finish_capture(self, items: list[ExecItem], start, out, ins, in_bufs, sig, static, args, kwargs):
    self.items, self.sig, self.static, self.out = items, sig, static, out
    self.in_bufs = in_bufs
    outs = _tensors_in(out)
    self.out_bufs = [t._buffer_view() for t in outs]
    self.out_shapes = [t.shape for t in outs]
    written = list({id(ei.bufs[0]): ei.bufs[0] for ei in items}.values())
    # a buffer made in the capture and returned gets a fresh one every replay; every other buffer a replay writes moves
    # to a new version (values that read its old contents are computed first, as the eager call's realize would)
    self.fresh = list({id(b): b for b in self.out_bufs if b.serial >= start and all(b is not i for i in in_bufs)}.values())
    # only buffers something outside the capture can name (an owner, a node reading it, a value cached in it) need that:
    # a capture's private scratch can never be named again once its nodes are gone
    self.written = [b for b in written if all(b is not f for f in self.fresh) and _observable(b)]
    read = {id(b) for ei in items for b in ei.bufs}
    inputs = {id(b) for b in in_bufs}
    # guards: each tensor the capture reads that the function finds through a name, an attribute or a list must still
    # be found there, owning the same buffer, on every replay
    self.guards = [(path, c, k, t, b) for path, c, k, t in _slots(self.fn, args, kwargs)
                   if (b := _held_in(t)) is not None and id(b) in read and id(b) not in inputs]
    if DEBUG >= 1: print(f"jit: captured {len(items)} items of {self.name} ({len(self.written)} buffers written, {len(self.guards)} guards, "
                         f"{len(self.unpacked_from)} buffers of lazy unpackings recomputed)")

  def _check(self, sig, static):
    if sig[0] != self.sig[0]:
      raise JitError(f"jit: {self.name} was captured for inputs {self.sig[0]} and now gets {sig[0]}; "
                     "a jitted function needs the same shapes, dtypes and devices on every call (make a new jit for new shapes)")
    if sig[1] != self.sig[1]:
      raise JitError(f"jit: {self.name} was captured with inputs aliased as {self.sig[1]} (each input's first equal input) and now gets "
                     f"{sig[1]}; a replay cannot undo or add sharing between its inputs (make a new jit for this call pattern)")
    try: same = bool(static == self.static)
    except Exception: same = False  # values that cannot be compared (arrays) count as changed
    if not same:
      raise JitError(f"jit: {self.name} was captured with the non-tensor arguments {self.static!r} and now gets "
                     f"{static!r}; a replay cannot change them (they were baked into the kernels): pass values that change as Tensors")
    for path, c, k, t, buf in self.guards:
      if (now := _read_slot(c, k)) is not t or _held_in(t) is not buf:
        raise JitError(f"jit: {self.name} read the tensor at `{path}` when it was captured, and that name now holds "
                       f"{'another tensor' if now is not t else 'a tensor with another buffer'}; a replay would read the old one. "
                       "Change its values in place (assign(), +=, [...] =) or make a new jit")

  def _prepare(self, swap: dict) -> list[Buffer]:
    """Before a replay: pending in-place writes run (a buffer it reads or writes may have one: `state += 1` between
    calls), and values that read the current contents of the buffers it writes are computed, as the eager call's
    realize would. Returns the buffers this replay writes."""
    from lucidgrad.tensor import Tensor, _destroyed_values, realize_nodes, pending_writes
    if (pending := list(pending_writes.values())): Tensor.realize(*pending)
    written = [swap.get(id(b), b) for b in self.written]
    if (readers := _destroyed_values(written, set(), made_in=(self.start, self.end))): realize_nodes(readers)
    return written

  def _replay(self, ins):
    from lucidgrad.tensor import _owner_of
    from lucidgrad.uop.ops import UOp
    swap = {id(old): t._buffer_view() for old, t in zip(self.in_bufs, ins)}
    written = self._prepare(swap)
    fresh = {id(b): Buffer(b.device, b.size, b.dtype) for b in self.fresh}
    swap.update(fresh)
    st = time.perf_counter()
    # kernel by kernel where each is timed or shown (DEBUG=2, PROFILE) or where an outer capture records them
    if self.graph is None: self.graph = GraphReplay.of(self.items, self.in_bufs, self.fresh) or False
    if self.graph and not capturing and DEBUG < 2 and not (PROFILE.value and not profile.keep_graphs[0]):
      if PROFILE.value: self._profiled_graph(swap)
      else: self.graph(swap)
    else: run_items(self.items, swap)
    for b in written: _bumped(b, (self.start, self.end))
    if DEBUG >= 2: print(f"jit: replayed {len(self.items)} items of {self.name} in {(time.perf_counter()-st)*1e3:.2f} ms")
    outs = []
    for b, shape in zip(self.out_bufs, self.out_shapes):
      if id(b) in fresh:  # a new storage, owned by the tensor returned
        node, view = UOp.new_buffer_view(b.device, b.size, b.dtype, shape)
        register_buffer(node, fresh[id(b)])
        outs.append(_owner_of(view))
      else:  # a storage that outlives the call (state, an input): its current contents, read like any tensor's
        nb = swap.get(id(b), b)
        outs.append(_value_of(next(n for n in live(nb.reads)).at_version(nb.version).reshape(shape)))
    return _rebuild(self.out, iter(outs))

  def _profiled_graph(self, swap: dict):
    """The graph run as one slice on the host and one on its device's track, timed by the device's events."""
    g = self.graph
    assert isinstance(g, GraphReplay)
    st, ev = time.perf_counter_ns(), g.dev.record_event()
    g(swap)
    secs = g.dev.event_seconds(ev, g.dev.record_event())
    end, name = time.perf_counter_ns(), f"graph {self.name} ({g.kernels} kernels)"
    args = {"device_us": secs * 1e6, "kernels": g.kernels, "flops": g.flops, "bytes": g.mem}
    profile.add_host(f"launch {name}", "graph", st, end, args)
    profile.add_device(g.dev.name, name, "graph", end, secs, args)

  def _verified_replay(self, args, kwargs, ins):
    """Replay, keep what it wrote, put those buffers back, run the function eagerly, and compare everything."""
    swap = {id(old): t._buffer_view() for old, t in zip(self.in_bufs, ins)}
    state = [b for b in self._prepare(swap) if b.owner is not None and b.owner() is not None]  # what outlives the call
    saved = [b.numpy() for b in state]
    out = self._replay(ins)
    got = [t.numpy() for t in _tensors_in(out)]
    wrote = [b.numpy() for b in state]
    for b, v in zip(state, saved): b.copyin(v.view(np.uint8))
    for b in state: _bumped(b, (self.start, self.end))  # the restored contents are one more version: nothing may read the replay's as if they were eager's
    eager = self._run_fn(args, kwargs)
    for i, (a, e) in enumerate(zip(got, [t.numpy() for t in _tensors_in(eager)])):
      if not _same(a, e): raise JitError(f"jit verify: output {i} of {self.name} differs between the replay and the eager call (max |diff| {_diff(a, e)})")
    names = {id(buf): path for path, _, _, _, buf in self.guards}
    for b, w in zip(state, wrote):
      if not _same(w, b.numpy()):
        raise JitError(f"jit verify: {self.name} wrote the buffer {names.get(id(b), f'of {b.size} x {b.dtype.name}')} differently in the replay "
                       f"and in the eager call (max |diff| {_diff(w, b.numpy())}): something the replay froze at capture changed")
    return eager

class GraphReplay:
  """A capture replayed as one device graph (a CUDA graph, docs/design/0025): its kernels are recorded once, and a
  recorded launch keeps the addresses it was recorded with. So the graph runs on private buffers in place of the
  inputs and of the outputs each replay returns fresh: a replay copies the new inputs into them, runs the graph, and
  copies out the fresh outputs and the inputs it wrote -- device to device, queued in order with the graph. Buffers
  the capture keeps (parameters, optimiser state, intermediates) are the same in every replay and are used in place."""
  @staticmethod
  def of(items: list[ExecItem], in_bufs: list[Buffer], fresh: list[Buffer]) -> GraphReplay | None:
    """The graph of a capture of kernels launched on one device that has graphs, else None."""
    if not JIT_GRAPH or not items or not all(isinstance(ei.runner, CompiledRunner) for ei in items): return None
    if len({ei.runner.device for ei in items}) != 1 or type(dev := Device[items[0].runner.device]).graph is Compiled.graph: return None
    # a recorded launch keeps the Variables' values it was recorded with, unless the device's graph fills them in
    if any(ei.runner.vars for ei in items) and not getattr(dev, "graph_vars", False): return None
    replay = GraphReplay(dev, items, in_bufs, fresh)
    return replay if replay.run is not None else None

  def __init__(self, dev, items: list[ExecItem], in_bufs: list[Buffer], fresh: list[Buffer]):
    written = {id(ei.bufs[0]) for ei in items}
    ins = list({id(b): b for b in in_bufs}.values())
    self.dev = dev
    self.private = {id(b): Buffer(b.device, b.size, b.dtype) for b in ins + fresh}
    self.copy_in = [(id(b), self.private[id(b)]) for b in ins]
    self.copy_out = [(id(b), self.private[id(b)]) for b in ins + fresh if id(b) in written]
    def raw(b: Buffer): return self.private.get(id(b), b).raw
    launches = [(ei.runner.program, [raw(ei.bufs[i]) for i in ei.runner.slots], ei.runner.spec.global_size, ei.runner.spec.local_size, ei.runner.vars)
                for ei in items]
    self.run = dev.graph(launches)
    self.kernels, self.flops, self.mem = len(items), sum(ei.runner.flops for ei in items), sum(ei.runner.mem_bytes for ei in items)

  def __call__(self, swap: dict[int, Buffer]):
    for key, p in self.copy_in:
      src = swap[key]
      p.allocator.transfer(p.raw, src.raw, p.nbytes, src.allocator)
    if isinstance(secs := self.run(), float): GlobalCounters.time_sum_s += secs  # a host graph times itself; a GPU's is queued
    for key, p in self.copy_out:
      dst = swap[key]
      dst.allocator.transfer(dst.raw, p.raw, p.nbytes, p.allocator)
    GlobalCounters.kernel_count += self.kernels
    GlobalCounters.global_ops += self.flops
    GlobalCounters.global_mem += self.mem
    if DEBUG >= 1: print(f"jit: ran {self.kernels} kernels as one graph")

def _same(a: np.ndarray, b: np.ndarray) -> bool:
  return a.shape == b.shape and (np.array_equal(a, b) or (a.dtype.kind == "f" and np.allclose(a, b, rtol=1e-6, atol=1e-6, equal_nan=True)))
def _diff(a: np.ndarray, b: np.ndarray):
  return np.abs(a.astype(np.float64) - b.astype(np.float64)).max() if a.shape == b.shape and a.size else f"shapes {a.shape} and {b.shape}"

def _bumped(b: Buffer, made_in: tuple[int, int]):
  """A storage written outside the scheduler: one more version, and its owner moves to it. Values cached in it that
  tensors made in the capture hold follow it too (they are the capture's own, like its state); values of tensors
  made before were computed elsewhere first (Jit._prepare)."""
  from lucidgrad.tensor import _strip, _held_by
  from lucidgrad.schedule import remember_value
  follow = [(n, v) for n in live(b.cached) if (v := _values_get(n)) is not None and any(made_in[0] <= t._serial < made_in[1] for t in _held_by(n))]
  b.version, b.cached = b.version + 1, []
  b.__dict__.pop("panels", None)  # a weight's panels hold the old contents (tensor._weight_panels)
  for n, v in follow: remember_value(n, _strip(v).at_version(b.version).reshape(v.shape))
  if b.owner is not None and (t := b.owner()) is not None and t._base is None and t._storage is b:
    t._set(t._current(_strip(t._uop).op.name == "BUFFER" and _strip(t._uop).arg[3]))

def _observable(b: Buffer) -> bool:
  return (b.owner is not None and b.owner() is not None) or bool(live(b.reads)) or bool(live(b.cached))

def _values_get(n):
  from lucidgrad.schedule import remembered
  return remembered(n)

def _value_of(node):
  from lucidgrad.tensor import Tensor
  return Tensor(node)

def jit(fn: Callable | None = None, *, verify: bool = False):
  """Decorator: capture the kernels of `fn` on its second call and replay them on later calls. verify=True (or JIT_VERIFY=1)
  checks every replay against an eager run and raises JitError naming the first output or buffer that differs."""
  if fn is None: return lambda f: Jit(f, verify)
  return Jit(fn, verify)
