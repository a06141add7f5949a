"""The user API: a lazy `Tensor` that builds a UOp graph. Nothing runs until `realize`, `numpy`, `item` or `tolist`;
then the graph is scheduled into kernels, compiled and run. Knows nothing of kernels or of devices' internals."""
from __future__ import annotations
import itertools, math, weakref
from typing import Any, Callable
import numpy as np
from lucidgrad.dtype import DType, dtypes, promote_types, result_type_scalar
from lucidgrad.helpers import prod
from lucidgrad.uop.ops import UOp, Ops, broadcast_shape
from lucidgrad.device import Device, Buffer, buffer_of, register_buffer
from lucidgrad.gradient import compute_gradient
from lucidgrad.tensor_shape import ShapeMixin
from lucidgrad.tensor_math import MathMixin
from lucidgrad.tensor_nn import NNMixin

_live_tensors: weakref.WeakSet[Tensor] = weakref.WeakSet()
_fresh = itertools.count()  # tags that keep CONTIGUOUS nodes distinct

class _TensorMeta(type):
  @property
  def default_float(cls) -> DType: return dtypes.default_float
  @default_float.setter
  def default_float(cls, dt: DType):
    if not dt.is_float(): raise TypeError(f"default_float must be a float dtype, got {dt}")
    dtypes.default_float = dt

def _to_dtype(dt: DType | str | None) -> DType | None:
  if dt is None or isinstance(dt, DType): return dt
  if isinstance(dt, str): return dtypes.from_name(dt)
  return dtypes.from_np(dt)

def _canon_shape(shape: tuple) -> tuple[int, ...]:
  if len(shape) == 1 and isinstance(shape[0], (tuple, list)): shape = tuple(shape[0])
  for s in shape:
    if not isinstance(s, (int, np.integer)) or isinstance(s, bool): raise TypeError(f"shape entries must be ints, got {shape}")
    if s < 0: raise ValueError(f"negative dimension in shape {shape}")
  return tuple(int(s) for s in shape)

class Tensor(ShapeMixin, MathMixin, NNMixin, metaclass=_TensorMeta):
  """A lazy n-dimensional array. Operations build a graph; `realize()` runs it."""
  _seed: int = 0x5EED
  _rng_state: dict[str, Tensor] = {}  # per device: uint32 [seed, calls so far]

  def __init__(self, data: Any, device: str | None = None, dtype: DType | str | None = None, requires_grad: bool | None = None):
    dtype, device = _to_dtype(dtype), Device.canonicalize(device)
    if isinstance(data, UOp): uop = data if device is None or data.device == device else data  # internal: wrap a graph
    elif isinstance(data, Tensor): uop = data.uop if dtype is None else data.uop.cast(dtype)
    elif isinstance(data, (bool, int, float)) and not isinstance(data, np.generic):
      uop = UOp.const(dtype or dtypes.from_py(data), data, device or Device.DEFAULT)
    else:
      if isinstance(data, (list, tuple)):
        dt = dtype or dtypes.from_py(data)
        try: arr = np.array(data, dtype=_host_np(dt))
        except ValueError as e: raise ValueError(f"cannot make a tensor from a ragged or non-numeric list: {e}") from None
      elif isinstance(data, (np.ndarray, np.generic)):
        arr = np.asarray(data)
        if dtype is None: dtype = dtypes.from_np(arr.dtype)
        arr = arr.astype(_host_np(dtype)) if arr.dtype != _host_np(dtype) else arr
      else: raise TypeError(f"cannot make a Tensor from a {type(data).__name__}; pass a number, a (nested) list, a NumPy array or a Tensor")
      dt = dtype or dtypes.from_py(data)
      uop = _buffer_from_numpy(np.asarray(arr, order="C"), device or Device.DEFAULT, dt)  # not ascontiguousarray: it makes 0-d arrays 1-d
    self.uop: UOp = uop
    self.grad: Tensor | None = None
    self.requires_grad: bool | None = None
    _live_tensors.add(self)
    if requires_grad: self.requires_grad_(True)

  # ---- facts ----
  @property
  def shape(self) -> tuple[int, ...]:
    """The tensor's shape."""
    return self.uop.shape
  @property
  def dtype(self) -> DType:
    """The element dtype."""
    return self.uop.dtype
  @property
  def device(self) -> str:
    """The device the tensor lives on, e.g. 'CPU'."""
    return self.uop.device
  @property
  def ndim(self) -> int:
    """Number of axes."""
    return len(self.shape)
  def numel(self) -> int:
    """Number of elements."""
    return prod(self.shape)
  def size(self, dim: int | None = None):
    """The shape, or the size of one axis."""
    return self.shape if dim is None else self.shape[self._axis(dim)]
  def element_size(self) -> int:
    """Bytes per element."""
    return self.dtype.itemsize
  def nbytes(self) -> int:
    """Bytes the values take."""
    return self.numel() * self.dtype.itemsize
  def __len__(self):
    if not self.shape: raise TypeError("len() of a 0-d tensor")
    return self.shape[0]
  def __repr__(self): return f"<Tensor shape={self.shape} dtype={self.dtype} device={self.device}{' realized' if self.uop.is_realized else ''}>"
  def __hash__(self): return id(self)
  def __bool__(self):
    if self.numel() != 1: raise RuntimeError(f"the truth value of a tensor with {self.numel()} elements is ambiguous")
    return bool(self.item())

  # ---- running ----
  def realize(self, *others: Tensor) -> Tensor:
    """Compute this tensor (and `others`) now; they then hold buffers and no history."""
    from lucidgrad.engine.realize import run_schedule
    from lucidgrad.schedule import create_schedule, is_buffer_view
    tensors = list({id(t): t for t in (self, *others)}.values())
    # two tensors that are one graph (Tensor.zeros(3) twice) still get a buffer each: one may be written in place later
    seen: set[UOp] = set()
    for t in tensors:
      if t.uop in seen and not is_buffer_view(t.uop): t.uop = UOp(Ops.CONTIGUOUS, t.dtype, (t.uop,), next(_fresh))
      seen.add(t.uop)
    # a pending value that reads a buffer this realize overwrites in place is computed now, from the old values (and
    # what it writes in turn may pull in more)
    while (writes := {n for n in UOp.sink(*[t.uop for t in tensors]).toposort if n.op is Ops.ASSIGN}):
      ids, written = {id(t) for t in tensors}, {n.src[0].base for n in writes}
      more = [t for t in list(_live_tensors) if id(t) not in ids and not is_buffer_view(t.uop) and _reads_old(t.uop, written, writes)]
      more.sort(key=lambda t: t.uop.key)  # a WeakSet's order follows memory addresses: keep schedules the same run to run
      if not more: break
      tensors += more
    schedule, becomes = create_schedule([t.uop for t in tensors])
    run_schedule(schedule)
    _remember_history(becomes)
    _follow(becomes, tensors)
    for t in tensors:  # a leaf updated in place (an optimizer step) is still a leaf: its new value has no history
      if t.requires_grad: _realized_with_history.discard(t.uop.base)
    return self
  def _buffer_view(self) -> Buffer:
    """A contiguous buffer holding exactly this tensor's elements."""
    if not (self.uop.op is Ops.BUFFER or (self.uop.op is Ops.RESHAPE and self.uop.src[0].op is Ops.BUFFER)):
      self.realize()
    return buffer_of(self.uop.base)
  def numpy(self) -> np.ndarray:
    """A NumPy copy of the values (bfloat16 comes back as float32)."""
    if self.numel() == 0: return np.zeros(self.shape, dtype=np.float32 if self.dtype == dtypes.bfloat16 else self.dtype.np)
    out = self._buffer_view().numpy().reshape(self.shape)
    if self.dtype == dtypes.bfloat16: out = (out.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return out
  def item(self):
    """The single value as a Python number (realizes)."""
    if self.numel() != 1: raise ValueError(f"item() needs a tensor of one element, this one has shape {self.shape}")
    return self.numpy().reshape(()).item()
  def tolist(self):
    """The values as nested Python lists (realizes)."""
    return self.numpy().tolist()
  def data(self) -> memoryview:
    """The values as a memoryview (realizes)."""
    return memoryview(self.numpy())
  def to(self, device: str) -> Tensor:
    """This tensor on another device (a copy when it differs)."""
    device = Device.canonicalize(device)
    if device == self.device: return self
    return Tensor(UOp(Ops.COPY, self.dtype, (self.uop,), device))
  def clone(self) -> Tensor:
    """A copy of the values in a new buffer."""
    from lucidgrad.schedule import is_buffer_view
    # a realized tensor's contiguous() is itself, so its clone is a same-device COPY: always a new buffer
    return Tensor(UOp(Ops.COPY, self.dtype, (self.uop,), self.device)) if is_buffer_view(self.uop) else self.contiguous()
  def contiguous(self) -> Tensor:
    """Mark this tensor to get a buffer of its own when realized (a realized, contiguous tensor is returned as is).
    Each call makes a distinct node, so two equal contiguous() tensors never share a buffer."""
    return Tensor(UOp(Ops.CONTIGUOUS, self.dtype, (self.uop,), next(_fresh)))
  def detach(self) -> Tensor:
    """The same values, with no gradient flowing back through them."""
    return Tensor(UOp(Ops.DETACH, self.dtype, (self.uop,)))

  # ---- gradients ----
  def requires_grad_(self, requires_grad: bool = True) -> Tensor:
    """Mark a leaf: backward() fills its .grad. A leaf gets a buffer of its own, so no two leaves share a graph node."""
    if requires_grad and not self.dtype.is_float(): raise TypeError(f"only float tensors can require gradients, this one is {self.dtype}")
    if requires_grad and self.uop.base.op is not Ops.BUFFER: self.uop = Tensor(self.uop).contiguous().realize().uop
    if requires_grad: _realized_with_history.discard(self.uop.base)  # a new leaf: whatever computed it is not its history
    self.requires_grad = requires_grad
    return self
  def gradient(self, *targets: Tensor, gradient: Tensor | None = None) -> list[Tensor]:
    """d self / d target for each target, as lazy tensors (like torch.autograd.grad); .grad is left alone."""
    if gradient is None:
      if self.numel() != 1: raise RuntimeError(f"gradient of a tensor of shape {self.shape} needs `gradient=` (only a one-element tensor has an implied one)")
      gradient = Tensor(self.uop.const_like(1.0))
    elif gradient.shape != self.shape: raise ValueError(f"gradient of shape {gradient.shape} does not match the tensor's shape {self.shape}")
    _check_history(self.uop)
    grads = compute_gradient(self.uop, gradient.cast(self.dtype).uop, {t.uop for t in targets})
    missing = [i for i, t in enumerate(targets) if t.uop not in grads]
    if missing: raise RuntimeError(f"targets {missing} are not part of the graph of this tensor (or only reach it through detach / integer ops)")
    return [Tensor(grads[t.uop]) for t in targets]
  def backward(self, gradient: Tensor | None = None) -> Tensor:
    """Add d self / d leaf to `.grad` of every leaf with requires_grad that this tensor depends on."""
    nodes = set(self.uop.toposort)
    leaves = [t for t in list(_live_tensors) if t.requires_grad and t.uop in nodes]
    if not leaves:
      _check_history(self.uop)
      raise RuntimeError("backward(): nothing in this graph requires grad (mark parameters with requires_grad=True)")
    for t, g in zip(leaves, self.gradient(*leaves, gradient=gradient)):
      t.grad = g if t.grad is None else t.grad + g
    return self

  # ---- creation ----
  @staticmethod
  def empty(*shape, dtype=None, device=None) -> Tensor:
    """A tensor of the given shape whose values are not initialised."""
    shape, dt = _canon_shape(shape), _to_dtype(dtype) or dtypes.default_float
    buf = UOp.new_buffer(Device.canonicalize(device) or Device.DEFAULT, prod(shape), dt)
    register_buffer(buf, Buffer(buf.device, prod(shape), dt))
    return Tensor(buf.reshape(shape))
  @staticmethod
  def from_bytes(data, dtype, shape, device=None) -> Tensor:
    """A tensor whose elements are the raw bytes of `data` (anything with the buffer protocol: bytes, memoryview, mmap),
    read as `dtype` (bfloat16 takes raw bf16 bits) in `shape`. On the CPU, writable memory is used in place, without a
    copy: the tensor and `data` share it, so keep `data` alive and unchanged; read-only memory and other devices copy."""
    shape, dt = _canon_shape(shape if isinstance(shape, (tuple, list)) else (shape,)), _to_dtype(dtype)
    mem = memoryview(data).cast("B")
    if mem.nbytes != prod(shape) * dt.itemsize:
      raise ValueError(f"from_bytes: {mem.nbytes} bytes do not hold a {dt.name} tensor of shape {shape} ({prod(shape) * dt.itemsize} bytes)")
    dev = Device.canonicalize(device) or Device.DEFAULT
    buf = UOp.new_buffer(dev, prod(shape), dt)
    # misaligned elements (a safetensors offset after an odd-sized tensor) are copied: kernels assume natural alignment
    aligned = mem.nbytes and np.frombuffer(mem, dtype=np.uint8).ctypes.data % dt.itemsize == 0
    raw = Device[dev].allocator.wrap(mem) if aligned else None
    register_buffer(buf, Buffer(dev, prod(shape), dt, raw) if raw is not None else Buffer(dev, prod(shape), dt).copyin(mem))
    return Tensor(buf.reshape(shape))
  @staticmethod
  def full(shape, fill_value, dtype=None, device=None) -> Tensor:
    """A tensor of the given shape filled with one value."""
    shape = _canon_shape(shape if isinstance(shape, (tuple, list)) else (shape,))
    dt = _to_dtype(dtype) or dtypes.from_py(fill_value)
    return Tensor(UOp.const(dt, fill_value, Device.canonicalize(device) or Device.DEFAULT).reshape((1,)*len(shape)).expand(shape))
  @staticmethod
  def zeros(*shape, dtype=None, device=None) -> Tensor:
    """A tensor of zeros."""
    return Tensor.full(_canon_shape(shape), 0, dtype=_to_dtype(dtype) or dtypes.default_float, device=device)
  @staticmethod
  def ones(*shape, dtype=None, device=None) -> Tensor:
    """A tensor of ones."""
    return Tensor.full(_canon_shape(shape), 1, dtype=_to_dtype(dtype) or dtypes.default_float, device=device)
  @staticmethod
  def arange(start, stop=None, step=1, dtype=None, device=None) -> Tensor:
    """Like range(): [start, stop) by step. Built from a sum of padded constants, so it fuses into its consumer."""
    if stop is None: start, stop = 0, start
    if step == 0: raise ValueError("arange: step must not be zero")
    n = max(0, math.ceil((stop - start) / step))
    dt = _to_dtype(dtype) or (dtypes.default_float if any(isinstance(x, float) for x in (start, stop, step)) else dtypes.default_int)
    return (_index_tensor(n, Device.canonicalize(device) or Device.DEFAULT).cast(dt) * step + start).cast(dt)
  @staticmethod
  def linspace(start, end, steps: int, dtype=None, device=None) -> Tensor:
    """steps evenly spaced values from start to end inclusive."""
    if steps < 0: raise ValueError(f"linspace: steps must be >= 0, got {steps}")
    dt = _to_dtype(dtype) or dtypes.default_float
    if steps == 1: return Tensor.full((1,), start, dtype=dt, device=device)
    return (Tensor.arange(steps, dtype=dtypes.float64 if dt == dtypes.float64 else dtypes.float32, device=device) * ((end - start) / (steps - 1)) + start).cast(dt)
  @staticmethod
  def eye(n: int, m: int | None = None, dtype=None, device=None) -> Tensor:
    """An n x m identity matrix."""
    m = n if m is None else m
    i, j = Tensor.arange(n, dtype=dtypes.int32, device=device), Tensor.arange(m, dtype=dtypes.int32, device=device)
    return (i.reshape(n, 1) == j.reshape(1, m)).cast(_to_dtype(dtype) or dtypes.default_float)
  def full_like(self, fill_value, dtype=None, device=None) -> Tensor:
    """A tensor of this shape filled with one value."""
    return Tensor.full(self.shape, fill_value, dtype=dtype or self.dtype, device=device or self.device)
  def zeros_like(self, **kw) -> Tensor:
    """Zeros in this tensor's shape."""
    return self.full_like(0, **kw)
  def ones_like(self, **kw) -> Tensor:
    """Ones in this tensor's shape."""
    return self.full_like(1, **kw)
  def empty_like(self, dtype=None, device=None) -> Tensor:
    """An uninitialised tensor of this shape."""
    return Tensor.empty(*self.shape, dtype=dtype or self.dtype, device=device or self.device)

  # ---- random: a counter-based generator (Threefry-2x32) run as kernels ----
  @staticmethod
  def manual_seed(seed: int = 0):
    """Seed the random generator: the same seed gives the same numbers on every device."""
    Tensor._seed = int(seed) & 0xffffffff
    for state in Tensor._rng_state.values(): state.assign(Tensor([Tensor._seed, 0], dtype=dtypes.uint32, device=state.device)).realize()
  @staticmethod
  def _random_bits(n: int, device: str) -> Tensor:
    """n uniformly random uint32 values; each call uses a fresh key, so calls never repeat.
    The key is (seed, calls so far), kept in a device buffer and advanced in place by a kernel, so a JIT replay that
    reruns the captured kernels draws new numbers, and every call runs the same compiled kernel."""
    if (state := Tensor._rng_state.get(device)) is None:
      state = Tensor._rng_state[device] = Tensor([Tensor._seed, 0], dtype=dtypes.uint32, device=device)
    key = (state + Tensor([0, 1], dtype=dtypes.uint32, device=device)).contiguous()
    Tensor.realize(key, state.assign(key))
    half = (n + 1) // 2
    ctr = _index_tensor(half, device).cast(dtypes.uint32)
    x0, x1 = _threefry2x32(ctr, Tensor.zeros(half, dtype=dtypes.uint32, device=device), key[0], key[1])
    return x0.cat(x1)[:n] if n else x0[:0]
  @staticmethod
  def rand(*shape, dtype=None, device=None) -> Tensor:
    """Uniform on [0, 1): only as many random bits as the dtype's mantissa holds, so rounding never makes a 1."""
    shape, dev, dt = _canon_shape(shape), Device.canonicalize(device) or Device.DEFAULT, _to_dtype(dtype) or dtypes.default_float
    bits = Tensor._random_bits(prod(shape), dev)
    m = {dtypes.float16: 11, dtypes.bfloat16: 8}.get(dt, 24)
    # contiguous: random values are a buffer, never recomputed inside the kernels that read them; made flat, so every
    # shape of one size runs the same compiled kernel
    return ((bits >> (32 - m)).cast(dtypes.float32) * (2.0 ** -m)).cast(dt).contiguous().reshape(shape)
  @staticmethod
  def randn(*shape, dtype=None, device=None) -> Tensor:
    """Standard normal, by the Box-Muller transform of two uniforms."""
    shape = _canon_shape(shape)
    u = Tensor.rand(2, prod(shape), dtype=dtypes.float32, device=device)
    r = (1 - u[0]).log().mul(-2).sqrt()
    return (r * (u[1] * (2 * math.pi)).cos()).cast(_to_dtype(dtype) or dtypes.default_float).contiguous().reshape(shape)
  @staticmethod
  def uniform(*shape, low=0.0, high=1.0, dtype=None, device=None) -> Tensor:
    """Uniform samples in [low, high)."""
    return (Tensor.rand(*shape, dtype=dtypes.float32, device=device) * (high - low) + low).cast(_to_dtype(dtype) or dtypes.default_float)
  @staticmethod
  def normal(*shape, mean=0.0, std=1.0, dtype=None, device=None) -> Tensor:
    """Normal samples with the given mean and std."""
    return (Tensor.randn(*shape, dtype=dtypes.float32, device=device) * std + mean).cast(_to_dtype(dtype) or dtypes.default_float)
  @staticmethod
  def randint(*shape, low=0, high=10, dtype=None, device=None) -> Tensor:
    """Random integers in [low, high)."""
    if high <= low: raise ValueError(f"randint: need low < high, got low={low} high={high}")
    return (Tensor.rand(*shape, dtype=dtypes.float64, device=device) * (high - low)).floor().cast(_to_dtype(dtype) or dtypes.default_int) + low
  def rand_like(self, **kw) -> Tensor:
    """Uniform [0, 1) samples in this tensor's shape."""
    return Tensor.rand(*self.shape, dtype=kw.get("dtype", self.dtype), device=kw.get("device", self.device))
  def randn_like(self, **kw) -> Tensor:
    """Standard normal samples in this tensor's shape."""
    return Tensor.randn(*self.shape, dtype=kw.get("dtype", self.dtype), device=kw.get("device", self.device))

  # ---- elementwise plumbing ----
  def _const(self, x, dtype: DType | None = None) -> Tensor:
    return Tensor(UOp.const(dtype or self.dtype, x, self.device))
  def _broadcasted(self, y, reverse=False, match_dtype=True) -> tuple[Tensor, Tensor]:
    x = self
    if isinstance(y, Tensor):
      if x.device != y.device: raise RuntimeError(f"tensors are on different devices: {x.device} and {y.device}; move one with .to()")
      dt = promote_types(x.dtype, y.dtype) if match_dtype else None
    elif isinstance(y, (int, float, bool)) and not isinstance(y, np.generic) or isinstance(y, np.generic):
      if isinstance(y, np.generic): y = y.item()
      dt = result_type_scalar(x.dtype, y)
      y = x._const(y, dt if match_dtype else None)
    else: raise TypeError(f"cannot combine a Tensor with a {type(y).__name__}")
    if match_dtype: x, y = x.cast(dt), y.cast(dt)
    if reverse: x, y = y, x
    shape = broadcast_shape(x.shape, y.shape)
    return x._broadcast_to(shape), y._broadcast_to(shape)
  def _broadcast_to(self, shape: tuple[int, ...]) -> Tensor:
    if self.shape == shape: return self
    if len(self.shape) > len(shape): raise ValueError(f"cannot broadcast shape {self.shape} to {shape}")
    padded = (1,) * (len(shape) - len(self.shape)) + self.shape
    broadcast_shape(padded, shape)
    if any(p != 1 and p != s for p, s in zip(padded, shape)): raise ValueError(f"cannot broadcast shape {self.shape} to {shape}")
    return Tensor(self.uop.reshape(padded).expand(shape))
  def _alu(self, op: Ops, *src: Tensor) -> Tensor: return Tensor(self.uop.alu(op, *[s.uop for s in src]))
  def _binop(self, op: Ops, y, reverse=False) -> Tensor:
    a, b = self._broadcasted(y, reverse)
    return a._alu(op, b)

  # ---- arithmetic ----
  def add(self, y, alpha=1) -> Tensor:
    """self + alpha * y, broadcasting."""
    return self._binop(Ops.ADD, y if alpha == 1 else y * alpha)
  def sub(self, y, alpha=1) -> Tensor:
    """self - alpha * y, broadcasting."""
    return self._binop(Ops.SUB, y if alpha == 1 else y * alpha)
  def mul(self, y) -> Tensor:
    """Elementwise product, broadcasting."""
    return self._binop(Ops.MUL, y)
  def div(self, y, reverse=False, rounding_mode: str | None = None) -> Tensor:
    """True division (ints become floats); rounding_mode 'trunc' or 'floor' as in PyTorch."""
    a, b = self._broadcasted(y, reverse)
    if rounding_mode == "floor": return a.floor_divide(b)
    if rounding_mode == "trunc": return a._alu(Ops.IDIV, b) if a.dtype.is_int() else a._alu(Ops.FDIV, b).trunc()
    if rounding_mode is not None: raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
    # ints divide as the default float; a Python scalar is converted from its value, not wrapped to the int dtype first
    if not a.dtype.is_float(): a, b = self.cast(dtypes.default_float)._broadcasted(y, reverse)
    return a._alu(Ops.FDIV, b)
  def floor_divide(self, y, reverse=False) -> Tensor:
    """Division rounded toward -inf, as Python's // does."""
    a, b = self._broadcasted(y, reverse)
    if a.dtype.is_float():  # from the exact remainder, as Python does: 1.0 // 0.1 is 9.0, not floor(1.0 / 0.1) = 10.0
      r = a._alu(Ops.MOD, b)
      q = (a - r) / b - ((r != 0) & ((r < 0) != (b < 0))).cast(a.dtype)
      fq = q.floor()
      fq = fq + (q - fq > 0.5).cast(a.dtype)
      return (b == 0).where(a / b, (q == 0).where((a / b).sign() * 0, fq))
    q = a._alu(Ops.IDIV, b)
    if a.dtype.is_unsigned(): return q
    fix = (a._alu(Ops.MOD, b) != 0) & ((a < 0) != (b < 0))
    return q - fix.cast(q.dtype)
  def mod(self, y, reverse=False) -> Tensor:
    """Remainder with the sign of the divisor, as Python's % does."""
    a, b = self._broadcasted(y, reverse)
    r = a._alu(Ops.MOD, b)  # C's fmod on floats: exact, with the sign of the dividend
    if a.dtype.is_float():
      moved = (r != 0) & ((r < 0) != (b < 0))
      return moved.where(r + b, (r == 0).where(b.sign() * 0, r))
    if a.dtype.is_unsigned(): return r
    return r + ((r != 0) & ((r < 0) != (b < 0))).where(b, 0)
  def pow(self, y, reverse=False) -> Tensor:
    """self ** y as in PyTorch: a negative float base to an integer power keeps its sign, to any other power is NaN;
    0 ** 0 is 1; ints multiply (wrapping) and to negative powers give 0 unless the base is 1 or -1."""
    a, b = self._broadcasted(y, reverse)
    if a.dtype.is_float(): return a._alu(Ops.POW, b)
    if a.dtype == dtypes.bool: return (a | ~b)
    # ints by squaring, so the result wraps as integer multiplication does; a**-n truncates to 0 unless a is 1 or -1
    out, base, e = a.ones_like(), a, b.abs()
    for _ in range(8 * a.dtype.itemsize): out, base, e = (e & 1).cast(dtypes.bool).where(out * base, out), base * base, e >> 1
    return out if a.dtype.is_unsigned() else ((b < 0) & (a.abs() != 1)).where(0, out)
  def maximum(self, y) -> Tensor:
    """Elementwise larger of two tensors (NaN wins)."""
    a, b = self._broadcasted(y)
    return a._alu(Ops.MAX, b) if a.dtype != dtypes.bool else a | b
  def minimum(self, y) -> Tensor:
    """Elementwise smaller of two tensors (NaN wins)."""
    a, b = self._broadcasted(y)
    if a.dtype == dtypes.bool: return a & b
    if a.dtype.is_unsigned(): return ~((~a).maximum(~b))
    return -((-a).maximum(-b))
  def where(self, x, y) -> Tensor:
    """self ? x : y, broadcasting all three."""
    cond = self if self.dtype == dtypes.bool else self != 0
    if not isinstance(x, Tensor) and not isinstance(y, Tensor):
      dt = dtypes.from_py(x) if type(x) is type(y) else promote_types(dtypes.from_py(x), dtypes.from_py(y))
      x = cond._const(x, dt)
    x, y = x._broadcasted(y) if isinstance(x, Tensor) else y._broadcasted(x, reverse=True)
    shape = broadcast_shape(cond.shape, x.shape)
    return Tensor(cond._broadcast_to(shape).uop.where(x._broadcast_to(shape).uop, y._broadcast_to(shape).uop))
  def clip(self, min_=None, max_=None) -> Tensor:
    """Values below min_ become min_ and above max_ become max_ (max_ wins when min_ > max_); NaN stays NaN, and the
    gradient passes where min_ <= x <= max_, as in PyTorch."""
    if min_ is None and max_ is None: raise ValueError("clip needs at least one of min and max")
    out = self if min_ is None else (self < min_).where(min_, self)
    return out if max_ is None else (out > max_).where(max_, out)
  clamp = clip

  # comparisons and logic
  def __lt__(self, y) -> Tensor: return self._binop(Ops.CMPLT, y)
  def __gt__(self, y) -> Tensor: return self._binop(Ops.CMPLT, y, reverse=True)
  def __eq__(self, y) -> Tensor: return self._binop(Ops.CMPEQ, y)  # type: ignore[override]
  def __ne__(self, y) -> Tensor: return self._binop(Ops.CMPNE, y)  # type: ignore[override]
  def __le__(self, y) -> Tensor: return (self < y) | (self == y)
  def __ge__(self, y) -> Tensor: return (self > y) | (self == y)
  def _bitop(self, op: Ops, y, reverse=False) -> Tensor:
    a, b = self._broadcasted(y, reverse)
    if a.dtype.is_float(): raise TypeError(f"bitwise {op.name.lower()} is not defined for {a.dtype}")
    return a._alu(op, b)
  def bitwise_and(self, y) -> Tensor:
    """Elementwise & of ints or bools."""
    return self._bitop(Ops.AND, y)
  def bitwise_or(self, y) -> Tensor:
    """Elementwise | of ints or bools."""
    return self._bitop(Ops.OR, y)
  def bitwise_xor(self, y) -> Tensor:
    """Elementwise ^ of ints or bools."""
    return self._bitop(Ops.XOR, y)
  def bitwise_not(self) -> Tensor:
    """Elementwise ~ of ints or bools."""
    if self.dtype.is_float(): raise TypeError(f"bitwise not is not defined for {self.dtype}")
    return self._bitop(Ops.XOR, True if self.dtype == dtypes.bool else -1 if not self.dtype.is_unsigned() else 2**(8*self.dtype.itemsize)-1)
  def logical_not(self) -> Tensor:
    """Elementwise not of truth values."""
    return self.cast(dtypes.bool).bitwise_xor(True)
  def logical_and(self, y) -> Tensor:
    """Elementwise and of truth values."""
    return self.cast(dtypes.bool).bitwise_and(y.cast(dtypes.bool) if isinstance(y, Tensor) else bool(y))
  def logical_or(self, y) -> Tensor:
    """Elementwise or of truth values."""
    return self.cast(dtypes.bool).bitwise_or(y.cast(dtypes.bool) if isinstance(y, Tensor) else bool(y))
  def logical_xor(self, y) -> Tensor:
    """Elementwise xor of truth values."""
    return self.cast(dtypes.bool).bitwise_xor(y.cast(dtypes.bool) if isinstance(y, Tensor) else bool(y))
  def lshift(self, n) -> Tensor:
    """Elementwise x << n."""
    return self._bitop(Ops.SHL, n)
  def rshift(self, n) -> Tensor:
    """Elementwise x >> n."""
    return self._bitop(Ops.SHR, n)

  # unary math
  def _float(self) -> Tensor: return self if self.dtype.is_float() else self.cast(dtypes.default_float)
  def _math(self, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """fn (a composite of several ops) on this tensor as floats: float16 and bfloat16 go through float32 and round once
    at the end, as PyTorch's kernels do, instead of rounding after every step."""
    x = self._float()
    return fn(x.cast(dtypes.float32)).cast(x.dtype) if x.dtype in (dtypes.float16, dtypes.bfloat16) else fn(x)
  def neg(self) -> Tensor:
    """Elementwise -x (logical not for bools)."""
    return self.logical_not() if self.dtype == dtypes.bool else self._alu(Ops.NEG)
  def exp2(self) -> Tensor:
    """Elementwise 2**x."""
    return self._float()._alu(Ops.EXP2)
  def log2(self) -> Tensor:
    """Elementwise base-2 logarithm."""
    return self._float()._alu(Ops.LOG2)
  def exp(self) -> Tensor:
    """Elementwise e**x."""
    return self._math(lambda x: (x * (1 / math.log(2))).exp2())
  def log(self) -> Tensor:
    """Elementwise natural logarithm."""
    return self._math(lambda x: x.log2() * math.log(2))
  def log10(self) -> Tensor:
    """Elementwise base-10 logarithm."""
    return self._math(lambda x: x.log2() * (math.log(2) / math.log(10)))
  def sqrt(self) -> Tensor:
    """Elementwise square root."""
    return self._float()._alu(Ops.SQRT)
  def rsqrt(self) -> Tensor:
    """Elementwise 1/sqrt(x)."""
    return self._math(lambda x: x.sqrt().reciprocal())
  def reciprocal(self) -> Tensor:
    """Elementwise 1/x."""
    return self._float()._alu(Ops.RECIPROCAL)
  def sin(self) -> Tensor:
    """Elementwise sine."""
    return self._float()._alu(Ops.SIN)
  def cos(self) -> Tensor:
    """Elementwise cosine."""
    return self._math(lambda x: (math.pi / 2 - x).sin())
  def tan(self) -> Tensor:
    """Elementwise tangent."""
    return self._math(lambda x: x.sin() / x.cos())
  def trunc(self) -> Tensor:
    """Round toward zero to an integer value."""
    return self if not self.dtype.is_float() else self._alu(Ops.TRUNC)
  def floor(self) -> Tensor:
    """Round down to an integer value."""
    if not self.dtype.is_float(): return self
    t = self.trunc()
    return t - (self < t).cast(self.dtype)
  def ceil(self) -> Tensor:
    """Round up to an integer value."""
    if not self.dtype.is_float(): return self
    t = self.trunc()
    return t + (self > t).cast(self.dtype)
  def round(self) -> Tensor:
    """Round half to even, as PyTorch and NumPy do."""
    if not self.dtype.is_float(): return self
    f = self.floor()
    diff = self - f
    up = (diff > 0.5) | ((diff == 0.5) & (f.mod(2) != 0))
    return f + up.cast(self.dtype)
  def abs(self) -> Tensor:
    """|x|; for floats x * sign(x), so the gradient at 0 is 0 as in PyTorch, and NaN stays NaN."""
    if self.dtype.is_unsigned() or self.dtype == dtypes.bool: return self
    return self * self.sign() if self.dtype.is_float() else (self < 0).where(-self, self)
  def sign(self) -> Tensor:
    """-1, 0 or 1 by the sign of x (NaN stays NaN)."""
    if self.dtype == dtypes.bool: return self
    return (self > 0).cast(self.dtype) - (self < 0).cast(self.dtype) if not self.dtype.is_float() else \
      (self > 0).where(1.0, (self < 0).where(-1.0, self * 0)).cast(self.dtype)
  def square(self) -> Tensor:
    """Elementwise x*x."""
    return self * self
  def relu(self) -> Tensor:
    """max(x, 0), NaN kept."""
    return self.maximum(0)
  def sigmoid(self) -> Tensor:
    """1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below: from z = e^-|x| <= 1, so nothing overflows, the limits at
    -+inf are exactly 0 and 1, and the gradient z / (1 + z)^2 stays finite."""
    def sigmoid(x: Tensor) -> Tensor:
      pos = x >= 0
      z = pos.where(-x, x).exp()
      return pos.where(1.0, z) / (1 + z)
    return self._math(sigmoid)
  def tanh(self) -> Tensor:
    """-expm1(-2|x|) / (2 + expm1(-2|x|)) with x's sign: accurate near 0, exactly +-1 (gradient 0) at +-inf."""
    def tanh(x: Tensor) -> Tensor:
      pos = x >= 0
      m = pos.where(-2.0 * x, 2.0 * x).expm1()
      t = -m / (m + 2)
      return pos.where(t, -t)
    return self._math(tanh)
  def erf(self) -> Tensor:
    """float64: the series 2/sqrt(pi) e^-x^2 sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)), whose terms are all positive (no
    cancellation), to 1e-15 on |x| <= 6 (beyond which erf is +-1 in float64). Other floats: Abramowitz & Stegun 7.1.26
    (absolute error below 1.5e-7) on |x| <= 10. Clipping makes the gradient exactly 0 (not 0 * inf) at +-inf."""
    def erf(x: Tensor) -> Tensor:
      if x.dtype == dtypes.float64:
        big, x = x.abs() >= 6.0, x.clip(-6.0, 6.0)
        term, total, x2 = x, x, x * x
        for n in range(1, 140): term = term * x2 * (2.0 / (2 * n + 1)); total = total + term
        return big.where(x.sign(), total * (-x2).exp() * (2 / math.sqrt(math.pi)))  # exactly +-1 out there
      # odd by a where on x >= 0, not by sign(x) * ..., whose derivative at 0 would be 0
      pos, x = x >= 0, x.clip(-10.0, 10.0)
      a = pos.where(x, -x)
      t = 1.0 / (1.0 + 0.3275911 * a)
      poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
      r = 1.0 - poly * (-(a * a)).exp()
      return pos.where(r, -r)
    return self._math(erf)
  def gelu(self, approximate: str = "none") -> Tensor:
    """x * Phi(x); at -inf the limit 0 (not -inf * 0), and the tanh form's cubic is clipped where tanh is already +-1."""
    if approximate not in ("none", "tanh"): raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    def gelu(x: Tensor) -> Tensor:
      xf = (x == -math.inf).where(0.0, x)
      if approximate == "none": return 0.5 * xf * (1 + (x * (1 / math.sqrt(2))).erf())
      xc = x.clip(-100.0, 100.0)
      return 0.5 * xf * (1 + (math.sqrt(2 / math.pi) * (xc + 0.044715 * xc * xc * xc)).tanh())
    return self._math(gelu)
  def silu(self) -> Tensor:
    """x * sigmoid(x)."""
    return self._math(lambda x: x * x.sigmoid())
  swish = silu
  def cast(self, dtype) -> Tensor:
    """Convert the values to another dtype (ints wrap, floats round)."""
    dt = _to_dtype(dtype)
    return self if dt == self.dtype else Tensor(self.uop.cast(dt))
  def bitcast(self, dtype) -> Tensor:
    """The same bytes read as another dtype of the same size."""
    dt = _to_dtype(dtype)
    if dt.itemsize != self.dtype.itemsize: raise TypeError(f"bitcast needs dtypes of one size: {self.dtype} is {self.dtype.itemsize} bytes, {dt} is {dt.itemsize}")
    return self if dt == self.dtype else Tensor(self.uop.bitcast(dt))
  def float(self) -> Tensor:
    """Cast to float32."""
    return self.cast(dtypes.float32)
  def half(self) -> Tensor:
    """Cast to float16."""
    return self.cast(dtypes.float16)
  def double(self) -> Tensor:
    """Cast to float64."""
    return self.cast(dtypes.float64)
  def int(self) -> Tensor:
    """Cast to int32."""
    return self.cast(dtypes.int32)
  def long(self) -> Tensor:
    """Cast to int64."""
    return self.cast(dtypes.int64)
  def bool(self) -> Tensor:
    """Cast to bool."""
    return self.cast(dtypes.bool)

  __add__, __mul__, __sub__, __pow__ = add, mul, sub, pow
  def __radd__(self, y): return self._binop(Ops.ADD, y, True)
  def __rsub__(self, y): return self._binop(Ops.SUB, y, True)
  def __rmul__(self, y): return self._binop(Ops.MUL, y, True)
  def __truediv__(self, y): return self.div(y)
  def __rtruediv__(self, y): return self.div(y, reverse=True)
  def __floordiv__(self, y): return self.floor_divide(y)
  def __rfloordiv__(self, y): return self.floor_divide(y, reverse=True)
  def __mod__(self, y): return self.mod(y)
  def __rmod__(self, y): return self.mod(y, reverse=True)
  def __rpow__(self, y): return self.pow(y, reverse=True)
  def __neg__(self): return self.neg()
  def __abs__(self): return self.abs()
  def __and__(self, y): return self.bitwise_and(y)
  def __or__(self, y): return self.bitwise_or(y)
  def __xor__(self, y): return self.bitwise_xor(y)
  def __rand__(self, y): return self._bitop(Ops.AND, y, True)
  def __ror__(self, y): return self._bitop(Ops.OR, y, True)
  def __rxor__(self, y): return self._bitop(Ops.XOR, y, True)
  def __invert__(self): return self.bitwise_not()
  def __lshift__(self, n): return self.lshift(n)
  def __rshift__(self, n): return self.rshift(n)
  def __matmul__(self, y): return self.matmul(y)
  def __rmatmul__(self, y): return Tensor(y).matmul(self) if not isinstance(y, Tensor) else y.matmul(self)

  # ---- movement ----
  def _axis(self, axis: int, ndim: int | None = None) -> int:
    n = self.ndim if ndim is None else ndim
    if not isinstance(axis, (int, np.integer)): raise TypeError(f"axis must be an int, got {axis!r}")
    if not -max(n, 1) <= axis < max(n, 1): raise IndexError(f"axis {axis} is out of range for a tensor of {n} dimensions (shape {self.shape})")
    return int(axis) % max(n, 1)
  def reshape(self, *shape) -> Tensor:
    """The same values in a new shape (one axis may be -1)."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    if sum(1 for s in shape if s == -1) > 1: raise ValueError(f"reshape: only one dimension can be -1, got {shape}")
    if any(not isinstance(s, (int, np.integer)) or s < -1 for s in shape): raise ValueError(f"reshape: bad shape {shape}")
    if -1 in shape:
      known = prod(s for s in shape if s != -1)
      if known == 0 or self.numel() % known: raise ValueError(f"cannot reshape tensor of shape {self.shape} ({self.numel()} elements) into {shape}")
      shape = tuple(self.numel() // known if s == -1 else s for s in shape)
    shape = tuple(int(s) for s in shape)
    if prod(shape) != self.numel(): raise ValueError(f"cannot reshape tensor of shape {self.shape} ({self.numel()} elements) into {shape}")
    return Tensor(self.uop.reshape(shape))
  view = reshape
  def permute(self, *order) -> Tensor:
    """Reorder the axes."""
    order = tuple(order[0]) if len(order) == 1 and isinstance(order[0], (tuple, list)) else order
    if len(order) != self.ndim: raise ValueError(f"permute: got {len(order)} axes {order} for a tensor of shape {self.shape}")
    order = tuple(self._axis(o) for o in order)
    if sorted(order) != list(range(self.ndim)): raise ValueError(f"permute: {order} is not a permutation of the axes of shape {self.shape}")
    return Tensor(self.uop.permute(order))
  def transpose(self, dim0: int = -2, dim1: int = -1) -> Tensor:
    """Swap two axes."""
    order = list(range(self.ndim))
    a, b = self._axis(dim0), self._axis(dim1)
    order[a], order[b] = order[b], order[a]
    return self.permute(order)
  @property
  def T(self) -> Tensor:
    """The tensor with its axes reversed."""
    return self.permute(tuple(reversed(range(self.ndim))))
  def expand(self, *shape) -> Tensor:
    """Broadcast size-1 axes to a larger shape (-1 keeps an axis)."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    if len(shape) < self.ndim: raise ValueError(f"expand: target {shape} has fewer dimensions than {self.shape}")
    padded = (1,) * (len(shape) - self.ndim) + self.shape
    new = tuple(p if s == -1 else s for p, s in zip(padded, shape))
    if any(p != 1 and p != n for p, n in zip(padded, new)): raise ValueError(f"expand: cannot expand shape {self.shape} to {shape}")
    return Tensor(self.uop.reshape(padded).expand(new))
  def shrink(self, arg) -> Tensor:
    """Keep [start, end) of each axis; None keeps the whole axis."""
    if len(arg) != self.ndim: raise ValueError(f"shrink: got {len(arg)} ranges for shape {self.shape}")
    arg = tuple((0, s) if a is None else (int(a[0]), int(a[1])) for a, s in zip(arg, self.shape))
    if any(not 0 <= b <= e <= s for (b, e), s in zip(arg, self.shape)): raise ValueError(f"shrink: {arg} is out of bounds for shape {self.shape}")
    return Tensor(self.uop.shrink(arg))
  def flip(self, axis) -> Tensor:
    """Reverse the order along the given axes."""
    axes = tuple(self._axis(a) for a in (axis if isinstance(axis, (tuple, list)) else (axis,)))
    if len(set(axes)) != len(axes): raise ValueError(f"flip: repeated axis in {axis}")
    return Tensor(self.uop.flip(axes))
  def squeeze(self, dim=None) -> Tensor:
    """Drop size-1 axes (all, or the ones named)."""
    if dim is None: return self.reshape(tuple(s for s in self.shape if s != 1))
    dims = {self._axis(d) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))} if self.ndim else set()
    return self.reshape(tuple(s for i, s in enumerate(self.shape) if not (i in dims and s == 1)))
  def unsqueeze(self, dim: int) -> Tensor:
    """Insert a size-1 axis at dim."""
    d = self._axis(dim, self.ndim + 1)
    return self.reshape(self.shape[:d] + (1,) + self.shape[d:])
  def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge axes start_dim..end_dim into one."""
    if self.ndim == 0: return self.reshape(1)
    s, e = self._axis(start_dim), self._axis(end_dim)
    return self.reshape(self.shape[:s] + (prod(self.shape[s:e+1]),) + self.shape[e+1:])
  # ---- reductions ----
  def _axes(self, axis) -> tuple[int, ...]:
    if axis is None: return tuple(range(self.ndim))
    axes = tuple(self._axis(a) for a in (axis if isinstance(axis, (tuple, list)) else (axis,))) if self.ndim else ()
    if len(set(axes)) != len(axes): raise ValueError(f"repeated axis in {axis}")
    return axes
  def _reduce(self, op: Ops, axis=None, keepdim=False) -> Tensor:
    axes = self._axes(axis)
    if op is Ops.MAX and any(self.shape[a] == 0 for a in axes):
      raise ValueError(f"max/min over axes {axes} of shape {self.shape}: an empty axis has no maximum or minimum")
    out = Tensor(self.uop.reduce_axis(op, axes))
    return out if keepdim else out.reshape(tuple(s for i, s in enumerate(self.shape) if i not in axes))
  def sum(self, axis=None, keepdim=False, dtype=None) -> Tensor:
    """Ints and bools (unsigned ones too) sum into int64, as in PyTorch; half floats accumulate in float32."""
    return self._accumulate(Ops.ADD, axis, keepdim, dtype)
  def prod(self, axis=None, keepdim=False, dtype=None) -> Tensor:
    """Product over axis (ints give int64)."""
    return self._accumulate(Ops.MUL, axis, keepdim, dtype)
  def _accumulate(self, op: Ops, axis, keepdim, dtype) -> Tensor:
    acc = _to_dtype(dtype) or (dtypes.int64 if self.dtype.is_int() or self.dtype == dtypes.bool else self.dtype)
    if acc in (dtypes.float16, dtypes.bfloat16): return self.cast(dtypes.float32)._reduce(op, axis, keepdim).cast(acc)
    return self.cast(acc)._reduce(op, axis, keepdim)
  def max(self, axis=None, keepdim=False) -> Tensor:
    """Largest value over axis (all axes when None)."""
    if self.dtype == dtypes.bool: return self.cast(dtypes.uint8).max(axis, keepdim).cast(dtypes.bool)
    return self._reduce(Ops.MAX, axis, keepdim)
  def min(self, axis=None, keepdim=False) -> Tensor:
    """Smallest value over axis (all axes when None)."""
    if self.dtype == dtypes.bool or self.dtype.is_unsigned(): return ~((~self).max(axis, keepdim))
    return -((-self).max(axis, keepdim))
  def mean(self, axis=None, keepdim=False) -> Tensor:
    """Average over axis (ints give floats)."""
    n = prod(self.shape[a] for a in self._axes(axis))
    return self._math(lambda x: x.sum(axis, keepdim) / n if n else x.sum(axis, keepdim) * math.nan)
  def var(self, axis=None, keepdim=False, correction=1) -> Tensor:
    """Variance over axis (with Bessel's correction by default)."""
    n = prod(self.shape[a] for a in self._axes(axis))
    def var(x: Tensor) -> Tensor:
      sq = (x - x.mean(axis, keepdim=True)).square().sum(axis, keepdim)
      return sq / (n - correction) if n - correction > 0 else sq * math.nan
    return self._math(var)
  def std(self, axis=None, keepdim=False, correction=1) -> Tensor:
    """Standard deviation over axis (with Bessel's correction by default)."""
    return self.var(axis, keepdim, correction).sqrt()
  def _argmax(self, axis, keepdim) -> Tensor:
    if axis is None and self.numel() == 0: raise ValueError(f"argmax/argmin of an empty tensor of shape {self.shape}")
    if axis is None: return self.flatten()._argmax(0, keepdim=False) if not keepdim else self.flatten()._argmax(0, False).reshape((1,)*self.ndim)
    a = self._axis(axis)
    n = self.shape[a]
    if n == 0: raise ValueError(f"argmax/argmin of an empty axis {a} of shape {self.shape}")
    rev = (n - Tensor.arange(n, dtype=dtypes.int32, device=self.device)).reshape((n,) + (1,) * (self.ndim - a - 1))
    hit = (self == self.max(a, keepdim=True))
    return (n - (hit.cast(dtypes.int32) * rev).max(a, keepdim)).cast(dtypes.int64)
  def argmax(self, axis=None, keepdim=False) -> Tensor:
    """Index of the largest value along axis (first one on ties); the flat index when axis is None."""
    return self._argmax(axis, keepdim)
  def argmin(self, axis=None, keepdim=False) -> Tensor:
    """Index of the smallest value along axis (first one on ties)."""
    return (self.logical_not() if self.dtype == dtypes.bool else ~self if self.dtype.is_unsigned() else -self)._argmax(axis, keepdim)
  def logsumexp(self, axis=None, keepdim=False) -> Tensor:
    """log(sum(exp(x))) over `axis`, shifted by the max so nothing overflows: -inf for a row of -inf, inf with an inf."""
    def logsumexp(x: Tensor) -> Tensor:
      # the shift cancels in value and gradient, so it is detached: the gradient is exactly softmax, with no max-reduce
      # derivative in it; rows of -inf (or inf) must not become inf - inf
      m = x.max(axis, keepdim=True).detach()
      m = (m.abs() == math.inf).where(0, m)
      out = (x - m).exp().sum(axis, keepdim=True).log() + m
      return out if keepdim else out.squeeze(self._axes(axis)) if self.ndim else out
    return self._math(logsumexp)
  def softmax(self, axis=-1) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis`, shifted by the max so nothing overflows."""
    def softmax(x: Tensor) -> Tensor:
      e = (x - x.max(axis, keepdim=True).detach()).exp()  # the shift cancels: detached, it adds nothing to the gradient
      return e / e.sum(axis, keepdim=True)
    return self._math(softmax)
  def log_softmax(self, axis=-1) -> Tensor:
    """x - logsumexp(x) along `axis`, shifted by the max: finite for finite x, however large."""
    def log_softmax(x: Tensor) -> Tensor:
      m = x - x.max(axis, keepdim=True).detach()  # the shift cancels: detached, it adds nothing to the gradient
      return m - m.exp().sum(axis, keepdim=True).log()
    return self._math(log_softmax)

  # ---- linear algebra ----
  def matmul(self, w: Tensor) -> Tensor:
    """PyTorch's matmul: 1-D operands are promoted and the extra axis dropped; batch axes broadcast."""
    if not isinstance(w, Tensor): w = Tensor(w, device=self.device)
    if self.ndim == 0 or w.ndim == 0: raise ValueError(f"matmul: both operands need at least 1 dimension, got {self.shape} and {w.shape}")
    x, y = (self.reshape(1, -1) if self.ndim == 1 else self), (w.reshape(-1, 1) if w.ndim == 1 else w)
    if x.shape[-1] != y.shape[-2]: raise ValueError(f"matmul: shapes {self.shape} and {w.shape} do not align ({x.shape[-1]} != {y.shape[-2]})")
    try: broadcast_shape(x.shape[:-2], y.shape[:-2])
    except ValueError: raise ValueError(f"matmul: the batch axes of shapes {self.shape} and {w.shape} cannot be broadcast together") from None
    dt = promote_types(x.dtype, y.dtype)
    # half floats multiply and add in float32 (where a product of two halves is exact) and round once at the end
    acc = dtypes.float32 if dt in (dtypes.float16, dtypes.bfloat16) else dt
    x, y = x.cast(acc), y.cast(acc)
    xb = x.reshape(*x.shape[:-1], 1, x.shape[-1])
    yb = y.transpose(-1, -2).reshape(*y.shape[:-2], 1, y.shape[-1], y.shape[-2])
    out = (xb * yb).sum(-1, dtype=acc if acc.is_float() else None)
    if out.dtype != dt: out = out.cast(dt)
    if self.ndim == 1: out = out.squeeze(-2)
    if w.ndim == 1: out = out.squeeze(-1)
    return out
  def dot(self, w: Tensor) -> Tensor:
    """Same as matmul."""
    return self.matmul(w)

# ---- helpers that build graphs ----
def _host_np(dt: DType):
  """The NumPy dtype that holds `dt`'s values on the host: bfloat16 values travel as float32 until they are copied in."""
  return np.float32 if dt == dtypes.bfloat16 else dt.np

def _buffer_from_numpy(arr: np.ndarray, device: str, dtype: DType) -> UOp:
  if dtype == dtypes.bfloat16:  # round float values to bfloat16 bits
    from lucidgrad.dtype import f32_to_bf16
    arr = np.array([f32_to_bf16(v) for v in arr.astype(np.float32).ravel()], dtype=np.uint16).reshape(arr.shape)
  buf = UOp.new_buffer(device, arr.size, dtype)
  b = Buffer(device, arr.size, dtype)
  if arr.size: b.copyin(arr.ravel().view(np.uint8) if arr.dtype != np.bool_ else arr.astype(np.uint8).ravel())
  register_buffer(buf, b)
  return buf.reshape(arr.shape)

def _index_tensor(n: int, device: str) -> Tensor:
  """int32 [0, 1, ..., n-1] built as a sum of bits: bit b of i is a padded constant seen through a reshape, so it
  costs no kernel of its own and fuses into whatever uses it."""
  if n == 0: return Tensor(UOp.const(dtypes.int32, 0, device).reshape((1,)).expand((1,))).shrink(((0, 0),))
  bits = max(1, (n - 1).bit_length())
  size = 1 << bits
  one = UOp.const(dtypes.int32, 1, device).reshape((1,))
  total = None
  for b in range(bits):  # an axis of 2 holding [0, 2^b] between an outer and an inner axis
    pair = one.pad(((1, 0),)).alu(Ops.MUL, UOp.const(dtypes.int32, 1 << b, device).reshape((1,)).expand((2,)))
    outer, inner = size >> (b + 1), 1 << b
    term = pair.reshape((1, 2, 1)).expand((outer, 2, inner)).reshape((size,))
    total = term if total is None else total.alu(Ops.ADD, term)
  return Tensor(total).shrink(((0, n),))

def _rotl(x: Tensor, r: int) -> Tensor: return (x << r) | (x >> (32 - r))

def _threefry2x32(x0: Tensor, x1: Tensor, k0: Tensor, k1: Tensor) -> tuple[Tensor, Tensor]:
  """Threefry-2x32 with 20 rounds (Salmon et al., SC'11), on uint32 tensors; the key is two uint32 scalars."""
  ks = [k0, k1, k0 ^ k1 ^ 0x1BD11BDA]
  rot = [13, 15, 26, 6, 17, 29, 16, 24]
  x0, x1 = x0 + ks[0], x1 + ks[1]
  for r in range(20):
    x0 = x0 + x1
    x1 = _rotl(x1, rot[r % 8]) ^ x0
    if r % 4 == 3:
      s = r // 4 + 1
      x0, x1 = x0 + ks[s % 3], x1 + (ks[(s + 1) % 3] + s)
  return x0, x1

# buffers that hold values computed from tensors that require grad: a graph that reads one cannot be differentiated
_realized_with_history: weakref.WeakSet[UOp] = weakref.WeakSet()

def _remember_history(becomes: dict[UOp, UOp]):
  params = {t.uop for t in list(_live_tensors) if t.requires_grad}
  if not params: return
  for old, new in becomes.items():
    # only buffers this realize computed (a node that simplified to an existing buffer keeps it), and only history
    # that gradients could follow: a DETACH cuts it
    if new.base not in old.toposort and _reaches(old, params): _realized_with_history.add(new.base)

def _reaches(u: UOp, targets: set[UOp]) -> bool:
  stack, seen = [u], set()
  while stack:
    n = stack.pop()
    if n in targets: return True
    if n in seen or n.op is Ops.DETACH: continue
    seen.add(n)
    stack.extend(n.src)
  return False

def _check_history(u: UOp):
  if any(n in _realized_with_history for n in u.toposort):
    raise RuntimeError("this graph reads a tensor that was realized (by realize(), numpy(), item() or tolist()) after it was computed "
                       "from tensors that require grad, so its history is gone: call backward() / gradient() before realizing")

def _reads_old(u: UOp, bufs: set[UOp], writes: set[UOp]) -> bool:
  """Would graph `u`, computed later, read one of `bufs` as it is now? An ASSIGN among `writes` is computed now (u then
  reads its result); any other ASSIGN's value is computed later, so it counts."""
  stack, seen = [u], set()
  while stack:
    n = stack.pop()
    if n in bufs: return True
    if n in seen or n in writes: continue
    seen.add(n)
    stack.extend(n.src[1:] if n.op is Ops.ASSIGN else n.src)
  return False

def _follow(becomes: dict[UOp, UOp], realized: list[Tensor]):
  """Point the realized tensors, and every live tensor whose graph held a realized node, at the buffers. A tensor that
  merely equals a realized one (the same graph built twice) keeps its graph: sharing the buffer would let an in-place
  write to one change the other; a CONTIGUOUS, COPY or ASSIGN node is owned by whoever holds it."""
  from lucidgrad.schedule import is_buffer_view
  if not becomes: return
  cache = dict(becomes)
  mine = {id(t) for t in realized}
  for t in list(_live_tensors):
    if t.uop in cache:
      if id(t) in mine or t.uop.op in (Ops.CONTIGUOUS, Ops.COPY, Ops.ASSIGN): t.uop = cache[t.uop]
    elif not is_buffer_view(t.uop) and any(n in becomes for n in t.uop.toposort): t.uop = t.uop.substitute(cache)
