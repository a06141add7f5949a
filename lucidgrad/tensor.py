"""The user API: a lazy `Tensor` that builds a UOp graph. Nothing runs until `realize`, `numpy`, `item` or `tolist`;
then the graph is scheduled into kernels, compiled and run. Knows nothing of kernels or of devices' internals.
How tensors, views, in-place writes and realized values relate: docs/design/0005-mutation-in-the-graph.md."""
from __future__ import annotations
import functools, itertools, math, struct, sys, os, warnings, weakref
from typing import Any, Callable
import numpy as np
from lucidgrad.dtype import DType, dtypes, promote_types, result_type, result_type_scalar
from lucidgrad.helpers import prod, argsort, live, add_weak, DEBUG, CHECK_INDEX, GlobalCounters, ContextVar
import lucidgrad.uop.ops as ops_module
from lucidgrad.uop.ops import UOp, Ops, GroupOp, broadcast_shape, intern_node, shape_is_symbolic, ssimplify, smax, smin, sint_value, sym_str
from lucidgrad.uop.pattern import VIZ
from lucidgrad.device import Device, Buffer, buffer_of, register_buffer, serials
from lucidgrad.gradient import compute_gradient
from lucidgrad.schedule import is_buffer_view, is_current, cached_value, remember_value, _create_schedule, STATEFUL as _STATEFUL
from lucidgrad.schedule.cache import BindingConflict, schedule_walk, templates, keep_template, make_template
from lucidgrad.engine.realize import lower_schedule, run_items, run_bound, capturing
from lucidgrad.tensor_shape import ShapeMixin, _can_cast
from lucidgrad.tensor_math import MathMixin
from lucidgrad.tensor_nn import NNMixin
from lucidgrad import tensor_dlpack, tensor_print

_fresh = itertools.count()  # tags that keep CONTIGUOUS nodes distinct
# looked up once: Ops.X is a slow attribute lookup on Python 3.11's EnumType (its __getattr__ hook), several times the
# cost of a call, and an eager op should cost a few microseconds in all
_ASSIGN, _DETACH, _RESHAPE, _BUFFER = Ops.ASSIGN, Ops.DETACH, Ops.RESHAPE, Ops.BUFFER
_ADD, _SUB, _MUL, _FDIV, _IDIV, _MOD, _MAX, _POW = Ops.ADD, Ops.SUB, Ops.MUL, Ops.FDIV, Ops.IDIV, Ops.MOD, Ops.MAX, Ops.POW
_NEG, _EXP2, _LOG2, _SQRT, _RECIPROCAL, _SIN, _COS, _TRUNC = Ops.NEG, Ops.EXP2, Ops.LOG2, Ops.SQRT, Ops.RECIPROCAL, Ops.SIN, Ops.COS, Ops.TRUNC
_CMPLT, _CMPNE, _CMPEQ, _AND, _OR, _XOR, _SHL, _SHR = Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ, Ops.AND, Ops.OR, Ops.XOR, Ops.SHL, Ops.SHR
_COMPARISON, _BOOL = frozenset({_CMPLT, _CMPNE, _CMPEQ}), dtypes.bool
# tensors whose value is an in-place write, by id (kept by Tensor._set; not a WeakSet: that would compare Tensors with ==)
pending_writes: weakref.WeakValueDictionary[int, Tensor] = weakref.WeakValueDictionary()

# ---- grad modes: whether ops record history. One switch for the process (`no_grad.enabled`, read by every op), not
# one per thread as in PyTorch: a mode set in one thread is the mode of every thread ----
class _GradMode:
  """What the grad-mode context managers share: `with` sets the mode and restores the one before it on exit; used as
  a decorator, `@mode()` (or `@mode` without parentheses) does the same around every call, on a fresh instance per
  call, so recursion and threads entering the same function never share a saved mode."""
  def __new__(cls, *args):
    if len(args) == 1 and callable(args[0]) and not isinstance(args[0], bool): return cls()(args[0])  # @no_grad, no parentheses
    return super().__new__(cls)
  def _inside(self) -> bool: raise NotImplementedError  # the mode inside the block
  def _clone(self) -> _GradMode: return type(self)()
  def __enter__(self): self._prev, no_grad.enabled = no_grad.enabled, self._inside()
  def __exit__(self, *exc): no_grad.enabled = self._prev
  def __call__(self, fn: Callable) -> Callable:
    if not callable(fn): raise TypeError(f"{type(self).__name__}: a decorator needs a function, got a {type(fn).__name__}")
    @functools.wraps(fn)
    def with_mode(*args, **kwargs):
      with self._clone(): return fn(*args, **kwargs)
    return with_mode

class no_grad(_GradMode):
  """`with no_grad():` (or `@no_grad()`, `@no_grad`): tensors built inside do not require grad, and in-place updates of
  parameters are allowed, as in PyTorch. It stops recording, nothing more: values are the same."""
  enabled = True  # the grad mode itself (False inside no_grad): every op reads it
  def _inside(self) -> bool: return False

class enable_grad(_GradMode):
  """`with enable_grad():` (or as a decorator): ops record history again inside a no_grad block, as in PyTorch."""
  def _inside(self) -> bool: return True

class set_grad_enabled(_GradMode):
  """PyTorch's set_grad_enabled(mode): called, it sets the grad mode at once; as a context manager it restores the
  mode from before the call on exit; as a decorator it leaves the mode alone and sets `mode` around every call."""
  def __new__(cls, mode: bool): return super().__new__(cls)
  def __init__(self, mode: bool):
    if not isinstance(mode, (bool, int)): raise TypeError(f"set_grad_enabled: mode must be a bool, got a {type(mode).__name__}")
    self.mode, self._prev, no_grad.enabled = bool(mode), no_grad.enabled, bool(mode)
  def _clone(self) -> _GradMode: return set_grad_enabled(self.mode)
  def __enter__(self): no_grad.enabled = self.mode  # the mode from before the call is restored on exit, not the one now
  def __call__(self, fn: Callable) -> Callable:
    no_grad.enabled = self._prev  # decorating sets nothing: the mode is set around each call
    return super().__call__(fn)

class inference_mode(_GradMode):
  """PyTorch's inference_mode(mode=True), as a context manager or decorator: here the same as no_grad() (lucidgrad
  keeps no version counters or views' autograd metadata to skip, so there is nothing more to turn off);
  inference_mode(False) changes nothing."""
  active = False  # inside an inference_mode(True) block: is_inference_mode_enabled()
  def __new__(cls, mode: bool = True): return super().__new__(cls, mode) if callable(mode) and not isinstance(mode, bool) else super().__new__(cls)
  def __init__(self, mode: bool = True): self.mode = bool(mode)
  def _clone(self) -> _GradMode: return inference_mode(self.mode)
  def _inside(self) -> bool: return no_grad.enabled and not self.mode
  def __enter__(self):
    super().__enter__()
    self._was, inference_mode.active = inference_mode.active, inference_mode.active or self.mode
  def __exit__(self, *exc):
    super().__exit__(*exc)
    inference_mode.active = self._was

def is_grad_enabled() -> bool:
  """Whether ops record history now (False inside no_grad and inference_mode), as torch.is_grad_enabled."""
  return no_grad.enabled

def is_inference_mode_enabled() -> bool:
  """Whether an inference_mode(True) block is active, as torch.is_inference_mode_enabled."""
  return inference_mode.active

_PACKAGE_DIR = os.path.dirname(__file__)

def user_line() -> str:
  """file:line of the innermost caller outside lucidgrad: where the user built what is being reported on."""
  here, f = _PACKAGE_DIR, sys._getframe(1)
  while f is not None and f.f_code.co_filename.startswith(here): f = f.f_back
  return f"{f.f_code.co_filename}:{f.f_lineno}" if f is not None else "?"

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
  """A lazy n-dimensional array. Operations build a graph; `realize()` runs it.
  A tensor is one of three kinds (docs/design/0005): an owner of a storage (its node is the storage's current version,
  or a pending write into it, or its cached graph); a view of a base tensor (movement steps, its node derived from the
  base's current node, so it sees writes to the base); or a value (a graph, computed when needed)."""
  _seed: int = 0x5EED
  _rng_state: dict[str, Tensor] = {}  # per device: uint32 [seed, calls so far]
  # what every tensor has, in slots: each op builds a tensor, and slots are set faster than __dict__ entries
  __slots__ = ("_base", "_storage", "_serial", "grad", "_uop", "_steps", "_from", "_derived", "_storage_node")

  def __init__(self, data: Any, device: str | None = None, dtype: DType | str | None = None, requires_grad: bool | None = None):
    dtype, device = _to_dtype(dtype), Device.canonicalize(device)
    self._base: Tensor | None = None
    self._storage: Buffer | None = None   # the storage this tensor owns, if any
    self._serial, self.grad = next(serials), None  # _serial: made before or after a moment (a JIT capture's start)
    if isinstance(data, Tensor) and dtype in (None, data.dtype) and device in (None, data.device):
      self._view_of(data, ())  # Tensor(t) is t under another name: an alias that sees t's writes, as a view does
      if requires_grad: self.requires_grad_(True)
      return
    if isinstance(data, UOp): uop = data  # internal: wrap a graph
    elif isinstance(data, Tensor):
      uop = data.uop if dtype is None else data.uop.cast(dtype)
      if device is not None and device != data.device: uop = UOp(Ops.COPY, uop.dtype, (uop,), device)
    elif isinstance(data, (bool, int, float)) and not isinstance(data, np.generic):
      uop = UOp.const(dtype or dtypes.from_py(data), data, device or Device.DEFAULT)
    else:
      if hasattr(data, "__dlpack__") and not isinstance(data, np.ndarray): data, dtype = _foreign_values(data, dtype)
      if isinstance(data, (list, tuple)):
        if (elements := _tensors_in(data)): data, dtype = _tensor_scalars(data, elements, dtype)
        dt = dtype or dtypes.from_py(data)
        try: arr = np.array(data, dtype=_host_np(dt))
        except ValueError as e: raise ValueError(f"cannot make a tensor from a ragged or non-numeric list: {e}") from None
      elif isinstance(data, (np.ndarray, np.generic)):
        arr = np.asarray(data)
        if dtype is None: dtype = dtypes.from_np(arr.dtype)
        with np.errstate(over="ignore"): arr = arr.astype(_host_np(dtype)) if arr.dtype != _host_np(dtype) else arr  # too big: inf, as torch
      else: raise TypeError(f"cannot make a Tensor from a {type(data).__name__}; pass a number, a (nested) list, a NumPy array, a Tensor "
                            "or an array with __dlpack__ (a torch tensor)")
      dt = dtype or dtypes.from_py(data)
      self._own(_buffer_from_numpy(np.asarray(arr, order="C"), device or Device.DEFAULT, dt))  # not ascontiguousarray: 0-d stays 0-d
      if requires_grad: self.requires_grad_(True)
      return
    # under no_grad() nothing built records history
    self._set(UOp(Ops.DETACH, uop.dtype, (uop,)) if not no_grad.enabled and uop.requires_grad else uop)
    if requires_grad: self.requires_grad_(True)

  # ---- what the tensor's value is: its own node, or one derived from its base ----
  @property
  def uop(self) -> UOp:
    """The node whose value this tensor is. A view's node is rebuilt from its base's current node when that changed."""
    if (base := self._base) is None: return self._uop
    if base._uop is not self._from: self._from, self._derived = base._uop, _apply_steps(base._uop, self._steps)
    return self._derived
  def _set(self, u: UOp):
    """This tensor (not a view) now has the value `u`; tensors holding a node are found by the values-a-write-destroys walk."""
    assert self._base is None, "a view's value comes from its base"
    self._uop = u
    if u.op is _ASSIGN: pending_writes[id(self)] = self  # what a jitted function must finish before its capture ends
    elif id(self) in pending_writes.data: del pending_writes[id(self)]  # (a weak dict's pop is slow Python; most have none)
    if u.device is not None: _hold(u, self)
  def _view_of(self, src: Tensor, steps: tuple):
    """Make this tensor a view of `src` through `steps` ((op, arg, input shape) movements, or DETACH)."""
    root, steps = (src._base, src._steps + steps) if src._base is not None else (src, steps)
    self._base, self._steps, self._from = root, steps, None
  def _view(self, op: Ops, arg) -> Tensor:
    """A view of this tensor through one more movement (or DETACH). Under no_grad() the view is detached."""
    t = Tensor.__new__(Tensor)
    t._storage, t.grad, t._serial = None, None, next(serials)
    u = self.uop
    steps = ((op, arg, u.shape),)
    if not no_grad.enabled and op is not Ops.DETACH and u.requires_grad: steps = ((Ops.DETACH, None, u.shape),) + steps
    t._view_of(self, steps)
    t._from, t._derived = t._base._uop, _apply_steps(u, steps)  # one step on from this node, not all of them from the base
    return t
  def _own(self, node: UOp, storage: Buffer | None = None):
    """This tensor becomes the owner of the storage `node` (a versioned BUFFER, or a reshape of one) reads (`storage`,
    if the caller has it at hand)."""
    b = node
    while b.op is _RESHAPE: b = b.src[0]
    self._storage, self._storage_node = storage or buffer_of(b), b
    self._storage.owner = weakref.ref(self)
    self._set(node)
  def _write(self, value: UOp):
    """Make `value` (this shape and dtype) this tensor's contents: into its storage (ASSIGN), through a view into its
    base, or, for a value that owns nothing, as its new graph."""
    if self._base is not None: return self._base._write(_unview(self._steps, value, self._base._uop))
    if self._storage is None: return self._set(value)
    if self._uop.op is Ops.ASSIGN: self.realize()  # the pending write runs first: other pending values may read what it wrote
    self._set(UOp(Ops.ASSIGN, self.dtype, (self._current(self.is_leaf and self.requires_grad), value)))
  def _current(self, requires_grad: bool = False) -> UOp:
    """An owner's storage read at its current version, in this tensor's shape."""
    assert self._storage is not None
    return _versioned(self._storage_node, self._storage, requires_grad).reshape(self.shape)
  @property
  def is_leaf(self) -> bool:
    """PyTorch's meaning: True unless the tensor was computed from tensors that require grad. Parameters are leaves:
    owners whose value is their storage (or a pending write into it) with the requires-grad flag."""
    if not self.requires_grad: return True
    if self._base is not None or self._storage is None: return False
    u = self._uop.src[0] if self._uop.op is Ops.ASSIGN else self._uop
    return is_buffer_view(u) and _strip(u).arg[3]
  def _leaf_that_requires_grad(self) -> bool:
    """Is this a leaf that requires grad, or a view of one? (Not through detach() or .data: those carry no history.)"""
    if self._base is not None and any(op is Ops.DETACH for op, _, _ in self._steps): return False
    root = self._base if self._base is not None else self
    return root.requires_grad and root.is_leaf

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
  def __hash__(self): return id(self)

  # ---- printing and Python's number protocols: each reads the values (a host read: realizes, and raises inside @jit) ----
  def __repr__(self) -> str:
    """The values as PyTorch prints them: `tensor([[1., 2.], ...])`, summarised past set_printoptions' threshold; the
    dtype when not the default of its kind (the default float, int64, bool), the device when not the CPU, and
    `requires_grad=True` for a leaf that requires grad or `grad_fn=<...>` for a tensor computed from one."""
    _host_read("printing a tensor")
    empty, dt = self.numel() == 0, self.dtype
    show_dtype = dt != dtypes.default_float if empty else dt not in (dtypes.default_float, dtypes.int64, dtypes.bool)
    grad = None if not self.requires_grad else "requires_grad=True" if self.is_leaf else f"grad_fn=<{self.grad_fn.name()}>"
    return tensor_print.tensor_str(self.numpy(), dt.is_float(), repr(dt) if show_dtype else None, None if self.device == "CPU" else self.device, grad)
  __str__ = __repr__
  def _scalar(self, what: str):
    if self.numel() != 1: raise ValueError(f"{what}: only one-element tensors can be converted to Python scalars, this one has shape {self.shape}")
    return self.item()
  def __bool__(self) -> bool:
    if self.numel() != 1: raise RuntimeError(f"the truth value of a tensor with {self.numel()} elements (shape {self.shape}) is ambiguous; use .any() or .all()")
    return bool(self.item())
  def __float__(self) -> float: return float(self._scalar("float()"))
  def __int__(self) -> int: return int(self._scalar("int()"))
  def __index__(self) -> int:
    """A one-element int or bool tensor as a list index or slice bound, as in PyTorch."""
    if self.dtype.is_float() or self.numel() != 1:
      raise TypeError(f"only integer tensors of a single element can be converted to an index; this one is {self.dtype.name} of shape {self.shape}")
    return int(self.item())
  def __format__(self, spec: str) -> str:
    """format(t, '.3f') formats a 0-d tensor's value; other tensors only take the empty spec (str(t)), as in PyTorch."""
    if self.ndim == 0: return format(self.item(), spec)
    if spec: raise TypeError(f"unsupported format string {spec!r} passed to Tensor.__format__ (only a 0-d tensor formats as its number; use t.item())")
    return str(self)
  def __iter__(self):
    """The slices along the first axis, as in PyTorch."""
    if self.ndim == 0: raise TypeError("iteration over a 0-d tensor")
    return iter(self.unbind(0))
  def __contains__(self, element) -> bool:
    """`x in t`: whether any element of t equals x (a number or a tensor broadcast against t), as in PyTorch."""
    if not isinstance(element, (Tensor, bool, int, float, np.generic)):
      raise TypeError(f"`in` a Tensor takes a number or a Tensor, got a {type(element).__name__}")
    hit = self == element
    return hit.numel() > 0 and bool(hit.max().item())
  # NumPy: np.asarray(t) is a copy of the values, as numpy() is; copy=False shares the storage (as __dlpack__ does), or
  # raises where it cannot. An ndarray operand defers to the Tensor (ndarray + t is a Tensor), as it does for torch's.
  __array_priority__ = 1000
  def __array__(self, dtype=None, copy: bool | None = None) -> np.ndarray:
    if copy is False:
      if self.dtype == dtypes.bfloat16: raise ValueError("np.asarray(t, copy=False): NumPy has no bfloat16, so a bfloat16 tensor is always converted (copied)")
      try: arr = self._shared_array(False)
      except BufferError as e: raise ValueError(f"np.asarray(t, copy=False): {e}") from None
    else: arr = self.numpy()
    if dtype is None or np.dtype(dtype) == arr.dtype: return arr
    if copy is False: raise ValueError(f"np.asarray(t, dtype={np.dtype(dtype)}, copy=False): a {self.dtype.name} tensor needs a copy to become {np.dtype(dtype)}")
    return arr.astype(dtype)

  # ---- DLPack: zero-copy exchange with NumPy, torch and other array libraries (host memory) ----
  def __dlpack_device__(self) -> tuple[int, int]:
    """(DLPack device type, index): (1, 0) for host memory, (2, i) for CUDA:i."""
    base, _, idx = self.device.partition(":")
    return (tensor_dlpack.KDL_CUDA, int(idx or 0)) if base == "CUDA" else (tensor_dlpack.KDL_CPU, 0)
  def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy: bool | None = None):
    """A DLPack capsule of this tensor for np.from_dlpack, torch.from_dlpack and the like. A CPU tensor that owns its
    storage (or a reshape or detach() view of one) shares it: writes on either side are seen by the other (lucidgrad
    sees a foreign write when it next reads the storage, so realize what must see the old values first). A lazy tensor is
    computed into a storage of its own first; a value no storage holds whole (a transposed or sliced view) is copied,
    as is everything with copy=True. A tensor that requires grad is refused, as in PyTorch (export .detach())."""
    if self.requires_grad: raise BufferError("cannot export a tensor that requires grad through DLPack (PyTorch refuses too): export t.detach()")
    here, host = self.__dlpack_device__(), (tensor_dlpack.KDL_CPU, 0)
    to_host = dl_device is not None and tuple(dl_device) != here  # a consumer may ask for a copy in host memory
    if to_host and (tuple(dl_device) != host or copy is False):
      raise BufferError(f"__dlpack__: cannot export a tensor on {self.device} to DLPack device {tuple(dl_device)}{' without a copy' * (copy is False)}")
    if here != host and not to_host: raise BufferError(f"__dlpack__: lucidgrad exports host memory only, this tensor is on {self.device}: export t.cpu()")
    return tensor_dlpack.export(self._shared_array(True if to_host else copy), self.dtype == dtypes.bfloat16, max_version)
  def _shared_array(self, copy: bool | None) -> np.ndarray:
    """The values as a NumPy array (bfloat16 as uint16 bits) on this tensor's own storage, without a copy, for
    __dlpack__ and np.asarray(copy=False): see there. With copy=True, or where no storage of this tensor holds its
    values whole, a copy (copy=False raises BufferError there)."""
    _host_read("exporting a tensor's memory (__dlpack__, np.asarray)")
    npdt = np.uint16 if self.dtype == dtypes.bfloat16 else self.dtype.np
    if copy is not True:
      root = self._base if self._base is not None else self
      if root._storage is None or root._uop.op is Ops.ASSIGN: root.realize()  # a lazy value takes a storage; a pending write runs
      whole = root is self or all(op is Ops.RESHAPE or op is Ops.DETACH for op, _, _ in self._steps)
      if whole and (buf := root._storage) is not None and (v := root._value_view()) is not None and buffer_of(_strip(v)) is buf and \
         (mem := buf.allocator.host_view(buf.raw)) is not None:
        buf._owned = False  # its memory is shared from now on: never handed to another Buffer when this one dies
        return np.frombuffer(mem, dtype=npdt, count=buf.size).reshape(self.shape)
      if copy is False: raise BufferError("this tensor's values are not a whole storage of its own (a transposed or sliced view, or a value held "
                                          "in another tensor's storage), so they cannot be shared without a copy: call .contiguous() first")
    return (self.bitcast(dtypes.uint16) if self.dtype == dtypes.bfloat16 else self).numpy()
  @staticmethod
  def from_dlpack(obj) -> Tensor:
    """A CPU tensor on the memory of `obj` (anything with __dlpack__ -- a torch tensor, a NumPy array -- or a DLPack
    capsule), without a copy where the memory allows: writable, C-contiguous and aligned. It keeps the producer's memory
    alive; writes on either side are seen by the other (lucidgrad sees a foreign write when it next reads the storage).
    Strided or read-only memory is copied. A Tensor is returned as t.detach() (the same storage)."""
    if isinstance(obj, Tensor): return obj.detach()
    arr, dt = tensor_dlpack.to_numpy(obj)
    if not arr.flags.c_contiguous: arr = np.ascontiguousarray(arr)
    return Tensor.from_bytes(arr.reshape(-1).view(np.uint8), dt, arr.shape, device="CPU")

  # ---- running ----
  def realize(self, *others: Tensor) -> Tensor:
    """Compute this tensor (and `others`) now. Each gets a buffer of its own unless its value was already computed; a
    tensor that requires grad keeps its graph (so backward() still works), others drop it. Other tensors are never
    changed, except that values an in-place write here would destroy are computed first (docs/design/0005)."""
    if not others:  # one tensor (most calls): its node read once, and the realize's body called without the VIZ wrapper
      u = self._uop if self._base is None else self.uop
      # a node that is no storage read and has no remembered value (an eager op's result) has none: no calls to say so
      if not _pending_checks and not (u.stored is None and u.op is not _RESHAPE and u.op is not _BUFFER) and _value_of(u) is not None: return self
      becomes = _realize_nodes([u]) if not VIZ.value else realize_nodes([u])
      if self._base is None and self._storage is None and (view := becomes.get(self._uop)) is not None and not (ops_module.variables_made and shape_is_symbolic(self._uop.shape)): self._take(view)
      return self
    tensors = list({id(t): t for t in (self, *others)}.values())
    if not _pending_checks and all(t._value_view() is not None for t in tensors): return self  # all computed already
    if others:
      # two tensors that are one graph (Tensor.zeros(3) twice) still get a buffer each: one may be written in place later
      seen: set[UOp] = set()
      for t in tensors:
        if t._base is None and t._uop in seen and not is_buffer_view(t._uop): t._set(UOp(Ops.CONTIGUOUS, t.dtype, (t._uop,), next(_fresh)))
        seen.add(t.uop)
    becomes = realize_nodes([t.uop for t in tensors])
    for t in tensors:
      # a symbolic tensor keeps its graph: its value is remembered as the max-form buffer (docs/design/0029)
      if t._base is None and t._storage is None and (view := becomes.get(t._uop)) is not None and not (ops_module.variables_made and shape_is_symbolic(t._uop.shape)): t._take(view)
    return self
  def _take(self, view: UOp):
    """After a realize computed this tensor's node into a new storage (`view`): own it. A node that requires
    grad stays as the tensor's value (its graph is what backward() differentiates; its value is cached); any other
    becomes the storage's current version, so the inputs its graph read can be freed."""
    b = view
    while b.op is _RESHAPE: b = b.src[0]  # _strip and buffer_of, inline: every eager realize's output passes here
    if (buf := b.__dict__.get("buffer") or buffer_of(b)).owner is not None and buf.owner() is not None: return  # the value lives in someone's storage
    history = self._uop
    if b.arg[2] != buf.version or b.arg[3] or history.requires_grad:
      self._own(view if b.arg[2] == buf.version and not b.arg[3] else _current_view(view, b, buf), buf)
      if history.requires_grad: self._set(history)
      return
    # _own(view, buf) and its _set, inline for the common case: a view of a storage just made, read at its current
    # version, taking the place of a value without history (every eager op's result)
    self._storage, self._storage_node, self._uop = buf, b, view
    buf.owner = ref = weakref.ref(self)
    if id(self) in pending_writes.data: del pending_writes[id(self)]
    if view.holders is None: view.holders = ref  # _hold's first holder (the same weak reference: one per object)
    else: _hold(view, self)
  def _value_view(self) -> UOp | None:
    """A current buffer view holding this tensor's value, or None if it has to be computed."""
    return _value_of(self.uop)
  def _buffer_view(self) -> Buffer:
    """A contiguous buffer holding exactly this tensor's elements (computed if need be)."""
    if (v := self._value_view()) is None:
      u = self.uop
      self.realize()  # a view's node may change in it (its base's write ran): the value asked for is u's
      if (v := cached_value(u) or self._value_view()) is None: raise RuntimeError(f"realize left no buffer for a tensor of shape {self.shape}")
    return buffer_of(_strip(v))
  def numpy(self) -> np.ndarray:
    """A NumPy copy of the values (bfloat16 comes back as float32)."""
    _host_read("numpy()")
    if shape_is_symbolic(self.shape):  # its buffer holds the max form: the bound prefix of each symbolic axis is the value
      shape, full = tuple(sint_value(s) for s in self.shape), tuple(smax(s) for s in self.shape)
      if 0 in shape: return np.zeros(shape, dtype=np.float32 if self.dtype == dtypes.bfloat16 else self.dtype.np)
      # computed afresh under the binding of now: a symbolic value is never remembered (it depends on the binding)
      view = realize_nodes([self.uop])[self.uop]
      out = buffer_of(_strip(view)).numpy()[:prod(full)].reshape(full)[tuple(slice(0, n) for n in shape)].copy()
      check_device_errors()
      return (out.view(np.uint16).astype(np.uint32) << 16).view(np.float32) if self.dtype == dtypes.bfloat16 else out
    if self.numel() == 0: return np.zeros(self.shape, dtype=np.float32 if self.dtype == dtypes.bfloat16 else self.dtype.np)
    out = self._buffer_view().numpy().reshape(self.shape)
    check_device_errors()
    if self.dtype == dtypes.bfloat16: out = (out.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return out
  def item(self):
    """The single value as a Python number (realizes)."""
    if self.numel() != 1: raise ValueError(f"item() needs a tensor of one element, this one has shape {self.shape}")
    return self.numpy().reshape(()).item()
  def tolist(self):
    """The values as nested Python lists (realizes)."""
    return self.numpy().tolist()
  @property
  def data(self) -> Tensor:
    """The same storage without history (PyTorch's .data): writes to it change this tensor, and no gradient flows."""
    return self.detach()
  @data.setter
  def data(self, value):
    if not isinstance(value, Tensor) or value.shape != self.shape:
      raise ValueError(f"`.data = ...` needs a Tensor of this tensor's shape {self.shape}; got {getattr(value, 'shape', type(value).__name__)}")
    self.assign(value.detach())
  def to(self, *args, **kwargs) -> Tensor:
    """PyTorch's to(): `to(dtype)`, `to(device)`, `to(device, dtype)`, `to(other)` (other's device and dtype),
    `to(device=..., dtype=..., copy=False)`; non_blocking and memory_format are accepted and change nothing. Returns
    this tensor itself when nothing changes (unless copy=True), else a new tensor: cast, then copied to the device."""
    device, dtype, copy = _to_args("to", args, kwargs)
    out = self if dtype is None else self.cast(dtype)
    if device is not None and device != out.device: out = Tensor(UOp(Ops.COPY, out.dtype, (out.uop,), device))
    return out.clone() if copy and out is self else out
  def cpu(self) -> Tensor:
    """This tensor on the CPU (itself if it is there)."""
    return self.to("CPU")
  def cuda(self, device: int | str | None = None, non_blocking: bool = False) -> Tensor:
    """This tensor on a CUDA device (`device`: an index or a name; the first by default); a RuntimeError saying why
    where CUDA cannot be opened."""
    name = "CUDA" if device is None else f"CUDA:{device}" if isinstance(device, int) and not isinstance(device, bool) else device
    if not isinstance(name, str) or not name.upper().startswith("CUDA"): raise ValueError(f"cuda(): device must be a CUDA index or name, got {device!r}")
    try: Device[name]
    except RuntimeError as e: raise RuntimeError(f"cuda(): no CUDA device is available here ({e})") from None
    return self.to(name)
  def type(self, dtype=None, non_blocking: bool = False):
    """With no argument, PyTorch's type string for this tensor's dtype and device, e.g. 'torch.FloatTensor' or
    'torch.cuda.LongTensor' (the same strings torch gives, so code comparing them runs unchanged). With a dtype, or such
    a string ('torch.cuda.IntTensor' also moves to CUDA), the tensor cast (and moved) as to() does."""
    if dtype is None:
      base = self.device.split(":")[0].lower()
      return f"torch.{'' if base == 'cpu' else base + '.'}{_TYPE_NAMES[self.dtype]}"
    if isinstance(dtype, str) and dtype.endswith("Tensor"):
      *where, name = dtype.split(".")
      dt = next((d for d, n in _TYPE_NAMES.items() if n == name), None)
      if dt is None or where[:1] not in (["torch"], ["lucidgrad"]) or len(where) > 2:
        raise ValueError(f"type(): unknown tensor type {dtype!r}; known: {['torch.' + n for n in _TYPE_NAMES.values()]} (and torch.cuda.*)")
      return self.to(*(["CUDA"] if where[1:] == ["cuda"] else ["CPU"] if len(where) == 1 else [where[1]]), dt)
    return self.cast(dtype)
  def clone(self) -> Tensor:
    """A copy of the values in a new buffer."""
    # a computed value's contiguous() is its buffer, so its clone is a same-device COPY: always a new buffer
    return Tensor(UOp(Ops.COPY, self.dtype, (self.uop,), self.device)) if self._value_view() is not None else self.contiguous()
  def contiguous(self) -> Tensor:
    """Mark this tensor to get a buffer of its own when realized (a realized, contiguous tensor is returned as is).
    Each call makes a distinct node, so two equal contiguous() tensors never share a buffer."""
    return Tensor(UOp(Ops.CONTIGUOUS, self.dtype, (self.uop,), next(_fresh)))
  def detach(self) -> Tensor:
    """The same values with no gradient flowing back through them: a view, so it sees (and makes) in-place writes."""
    return self._view(Ops.DETACH, None)

  # ---- gradients ----
  @property
  def requires_grad(self) -> bool:
    """Whether gradients flow to this tensor: set on leaves with requires_grad_(), derived for everything computed from them."""
    return self.uop.requires_grad
  @requires_grad.setter
  def requires_grad(self, v: bool): self.requires_grad_(v)
  def requires_grad_(self, requires_grad: bool = True) -> Tensor:
    """Mark a leaf: backward() fills its .grad. A leaf owns a storage: a tensor that does not (a value, a view) is first
    computed into one of its own, and a view stops being one. Only leaves can stop requiring grad, as in PyTorch."""
    if requires_grad and not self.dtype.is_float(): raise TypeError(f"only float tensors can require gradients, this one is {self.dtype}; cast it first (.float())")
    if self.requires_grad == bool(requires_grad): return self
    if not requires_grad:
      if not self.is_leaf:
        raise RuntimeError("requires_grad_(False) on a tensor computed from tensors that require grad: use .detach() for one without history")
      (self._base if self._base is not None else self)._set_leaf(False)
      return self
    if self._base is None and self._storage is not None and self._uop.op is Ops.ASSIGN: self.realize()
    if self._base is not None or self._storage is None or not is_buffer_view(self._uop):
      fresh = self.clone().realize()
      # a value already in some buffer can simplify to it (contiguous() of a buffer is the buffer): copy it then
      if fresh._storage is None: fresh = Tensor(UOp(Ops.COPY, self.dtype, (fresh.uop,), self.device)).realize()
      self._base = None
      self._own(fresh._uop)
    self._set_leaf(True)
    return self
  def _set_leaf(self, requires_grad: bool): self._set(self._current(requires_grad))
  @property
  def grad_fn(self) -> GradFn | None:
    """None for a leaf (and anything that does not require grad); for a tensor computed from tensors that require
    grad, a GradFn naming the op of its last step, e.g. MulBackward (PyTorch's names end in a number: MulBackward0)."""
    if self.is_leaf: return None
    u = self.uop
    name = {Ops.ADD: "Sum", Ops.MAX: "Max", Ops.MUL: "Prod"}.get(u.arg[0], "Reduce") if u.op is Ops.REDUCE_AXIS else \
      "".join(w.capitalize() for w in u.op.name.split("_"))
    return GradFn(f"{name}Backward")
  def gradient(self, *targets: Tensor, gradient: Tensor | None = None) -> list[Tensor]:
    """d self / d target for each target, as lazy tensors (like torch.autograd.grad); .grad is left alone."""
    _leaves(self.uop)  # raises if a leaf was written in place since this graph was built
    grads = self._grads([t.uop for t in targets], gradient)
    missing = [i for i, g in enumerate(grads) if g is None]
    if missing: raise RuntimeError(f"targets {missing} are not part of the graph of this tensor (or only reach it through detach / integer ops)")
    return [Tensor(g) for g in grads]
  def _grads(self, nodes: list[UOp], gradient: Tensor | None) -> list[UOp | None]:
    if gradient is None:
      if self.numel() != 1: raise RuntimeError(f"gradient of a tensor of shape {self.shape} needs `gradient=` (only a one-element tensor has an implied one)")
      gradient = Tensor(self.uop.const_like(1.0))
    elif gradient.shape != self.shape: raise ValueError(f"gradient of shape {gradient.shape} does not match the tensor's shape {self.shape}")
    grads = compute_gradient(self.uop, gradient.cast(self.dtype).uop, set(nodes))
    return [grads.get(n) for n in nodes]
  def backward(self, gradient: Tensor | None = None, create_graph: bool = False) -> Tensor:
    """Add d self / d leaf to `.grad` of every leaf that requires grad this tensor depends on (found in its own graph).
    As in PyTorch, .grad carries no history unless create_graph=True (gradient() keeps it, for higher derivatives)."""
    leaves = _leaves(self.uop)
    if not leaves: raise RuntimeError("backward(): nothing in this graph requires grad (mark parameters with requires_grad=True; "
                                      "a tensor built under no_grad() or through detach() carries no history)")
    for (node, t), g in zip(leaves.items(), self._grads(list(leaves), gradient)):
      if g is None or t is None: continue
      g = Tensor(g.reshape(t.shape) if create_graph else UOp(Ops.DETACH, g.dtype, (g.reshape(t.shape),)))  # in the leaf's shape
      t.grad = g if t.grad is None else t.grad + g
    return self

  # ---- creation ----
  @staticmethod
  def empty(*shape, dtype=None, device=None) -> Tensor:
    """A tensor of the given shape whose values are not initialised."""
    shape, dt = _canon_shape(shape), _to_dtype(dtype) or dtypes.default_float
    buf, view = UOp.new_buffer_view(Device.canonicalize(device) or Device.DEFAULT, prod(shape), dt, shape)
    register_buffer(buf, Buffer(buf.device, prod(shape), dt))
    return _owner_of(view)
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
    buf, view = UOp.new_buffer_view(dev, prod(shape), dt, shape)
    # misaligned elements (a safetensors offset after an odd-sized tensor) are copied: kernels assume natural alignment
    aligned = mem.nbytes and np.frombuffer(mem, dtype=np.uint8).ctypes.data % dt.itemsize == 0
    raw = Device[dev].allocator.wrap(mem) if aligned else None
    register_buffer(buf, Buffer(dev, prod(shape), dt, raw) if raw is not None else Buffer(dev, prod(shape), dt).copyin(mem))
    return _owner_of(view)
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
    if any(isinstance(x, UOp) for x in (start, stop, step)):
      raise TypeError(f"arange: a symbolic bound ({sym_str(next(x for x in (start, stop, step) if isinstance(x, UOp)))}) is not supported; "
                      "take a fixed arange and slice it (Tensor.arange(max)[:n]), docs/design/0029")
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
  def _broadcasted(self, y, reverse=False) -> tuple[Tensor, Tensor]:
    """self and y (a Tensor, a NumPy array, or a Python/NumPy scalar) promoted to one dtype and broadcast to one shape,
    in operand order."""
    if type(y) is np.ndarray: y = Tensor(y, device=self.device)  # as torch takes one: a tensor of its dtype
    if not isinstance(y, Tensor):
      x, c = self._with_scalar(y)
      return (_value(c), x) if reverse else (x, _value(c))
    x = self
    if x.device != y.device: raise RuntimeError(f"tensors are on different devices: {x.device} and {y.device}; move one with .to()")
    xu, yu = x.uop, y.uop
    if xu.dtype != yu.dtype:
      dt = result_type(xu.dtype, not xu.shape, yu.dtype, not yu.shape)
      x, y = x.cast(dt), y.cast(dt)
    if reverse: x, y = y, x
    if xu.shape == yu.shape: return x, y
    shape = broadcast_shape(x.shape, y.shape)
    return x._expand_to(shape), y._expand_to(shape)
  def _expand_to(self, shape: tuple[int, ...]) -> Tensor:
    """This tensor broadcast to `shape`, which broadcasting it with something gave (so no check)."""
    if (own := self.shape) == shape: return self
    padded = (1,) * (len(shape) - len(own)) + own
    return (self if padded == own else self._view(Ops.RESHAPE, padded))._view(Ops.EXPAND, shape)
  def _with_scalar(self, y) -> tuple[Tensor, UOp]:
    """self cast to the dtype of `self op y` for a Python or NumPy scalar y, and y as a constant node of that dtype in
    self's shape (the graph broadcasting a 0-d constant builds, shared: see _scalar_node)."""
    if (ty := type(y)) is not float and ty is not int: y = _plain_scalar(y)  # plain Python numbers need no check
    u = self.uop
    key = _scalar_key(y, u.dtype, u.device, u.shape)
    dt, c = hit if (hit := _kept_graphs.get(key)) is not None else _scalar_node(y, key)
    return (self if dt is u.dtype else self.cast(dt)), c
  def _broadcast_to(self, shape: tuple[int, ...]) -> Tensor:
    if self.shape == shape: return self
    if len(self.shape) > len(shape): raise ValueError(f"cannot broadcast shape {self.shape} to {shape}")
    padded = (1,) * (len(shape) - len(self.shape)) + self.shape
    broadcast_shape(padded, shape)
    if any(p != 1 and p != s for p, s in zip(padded, shape)): raise ValueError(f"cannot broadcast shape {self.shape} to {shape}")
    return self._view(Ops.RESHAPE, padded)._view(Ops.EXPAND, shape)
  def _alu(self, op: Ops, *src: Tensor) -> Tensor: return _value(self.uop.alu(op, *[s.uop for s in src]))
  def _binop(self, op: Ops, y, reverse=False) -> Tensor:
    if isinstance(y, Tensor):
      a, b = self._broadcasted(y, reverse)
      return _value(a.uop.alu(op, b.uop))
    # a Python or NumPy scalar, the path of most eager ops: no Tensor for the constant (it is only a source of the node
    # built here) and the node built directly, with UOp.alu's dtype rule
    if (ty := type(y)) is not float and ty is not int:
      if ty is np.ndarray: return self._binop(op, Tensor(y, device=self.device), reverse)
      ty = type(y := _plain_scalar(y))
    u = self._uop if self._base is None else self.uop
    # the scalar table's hit looked up here, its key _scalar_key's inlined: a frame less on most eager ops
    key = (struct.pack("d", y) if isinstance(y, float) and not (y and y == y) else y, ty, u.dtype, u.device, u.shape)
    dt, c = hit if (hit := _kept_graphs.get(key)) is not None else _scalar_node(y, key)
    if dt is not u.dtype: u = self.cast(dt).uop
    u = intern_node(UOp, op, _BOOL if op in _COMPARISON else dt, (c, u) if reverse else (u, c))
    # _value(u), inlined (a frame less on most eager ops; an op's node is no write)
    t = Tensor.__new__(Tensor)
    t._base = t._storage = t.grad = None
    t._serial = next(serials)
    if u.requires_grad and not no_grad.enabled: u = UOp(_DETACH, u.dtype, (u,))
    t._uop = u
    if u.device is not None:
      if u.holders is None: u.holders = weakref.ref(t)
      else: _hold(u, t)
    return t

  # ---- arithmetic ----
  def add(self, y, alpha=1) -> Tensor:
    """self + alpha * y, broadcasting."""
    return self._binop(_ADD, y if alpha == 1 else y * alpha)
  def sub(self, y, alpha=1) -> Tensor:
    """self - alpha * y, broadcasting."""
    return self._binop(_SUB, y if alpha == 1 else y * alpha)
  def mul(self, y) -> Tensor:
    """Elementwise product, broadcasting."""
    return self._binop(_MUL, y)
  def div(self, y, reverse=False, rounding_mode: str | None = None) -> Tensor:
    """True division (ints become floats); rounding_mode 'trunc' or 'floor' as in PyTorch."""
    a, b = self._broadcasted(y, reverse)
    if rounding_mode == "floor": return a.floor_divide(b)
    if rounding_mode == "trunc": return a._alu(_IDIV, b) if a.dtype.is_int() else a._alu(_FDIV, b).trunc()
    if rounding_mode is not None: raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
    # ints divide as the default float; a Python scalar is converted from its value, not wrapped to the int dtype first
    if not a.dtype.is_float(): a, b = self.cast(dtypes.default_float)._broadcasted(y, reverse)
    return a._alu(_FDIV, b)
  def floor_divide(self, y, reverse=False) -> Tensor:
    """Division rounded toward -inf, as Python's // does."""
    a, b = self._broadcasted(y, reverse)
    if a.dtype.is_float():  # from the exact remainder, as Python does: 1.0 // 0.1 is 9.0, not floor(1.0 / 0.1) = 10.0
      r = a._alu(_MOD, b)
      q = (a - r) / b - ((r != 0) & ((r < 0) != (b < 0))).cast(a.dtype)
      fq = q.floor()
      fq = fq + (q - fq > 0.5).cast(a.dtype)
      return (b == 0).where(a / b, (q == 0).where((a / b).sign() * 0, fq))
    q = a._alu(_IDIV, b)
    if a.dtype.is_unsigned(): return q
    fix = (a._alu(_MOD, b) != 0) & ((a < 0) != (b < 0))
    return q - fix.cast(q.dtype)
  def mod(self, y, reverse=False) -> Tensor:
    """Remainder with the sign of the divisor, as Python's % does."""
    a, b = self._broadcasted(y, reverse)
    r = a._alu(_MOD, b)  # C's fmod on floats: exact, with the sign of the dividend
    if a.dtype.is_float():
      moved = (r != 0) & ((r < 0) != (b < 0))
      # a zero remainder takes b's sign; r.detach() - r is +0 there, so subtracting it keeps that zero and carries r's
      # gradient (torch: d/da = 1, d/db = -floor(a / b) everywhere)
      return moved.where(r + b, (r == 0).where(b.sign() * 0 - (r.detach() - r), r))
    if a.dtype.is_unsigned(): return r
    return r + ((r != 0) & ((r < 0) != (b < 0))).where(b, 0)
  def pow(self, y, reverse=False) -> Tensor:
    """self ** y as in PyTorch: a negative float base to an integer power keeps its sign, to any other power is NaN;
    0 ** 0 is 1; ints multiply (wrapping) and to negative powers give 0 unless the base is 1 or -1."""
    a, b = self._broadcasted(y, reverse)
    # torch and NumPy take x ** 0.5 as sqrt(x) (NaN at -inf, where C's pow gives +inf)
    if not reverse and isinstance(y, float) and y == 0.5 and self.dtype.is_float(): return self.sqrt()
    # and x ** 1, 2, 3 as products, exact (a GPU's pow is within 2 ulp: 3.0 ** 1 gave 2.9999999999999996 in float64)
    if not reverse and type(y) in (int, float) and y in (1, 2, 3) and a.dtype.is_float():
      return a * 1 if y == 1 else a * a if y == 2 else a * a * a
    if a.dtype.is_float(): return a._alu(_POW, b)
    if a.dtype == dtypes.bool: return (a | ~b)
    # ints by squaring, so the result wraps as integer multiplication does; a**-n truncates to 0 unless a is 1 or -1
    out, base, e = a.ones_like(), a, b.abs()
    for _ in range(8 * a.dtype.itemsize): out, base, e = (e & 1).cast(dtypes.bool).where(out * base, out), base * base, e >> 1
    return out if a.dtype.is_unsigned() else ((b < 0) & (a.abs() != 1)).where(0, out)
  def maximum(self, y) -> Tensor:
    """Elementwise larger of two tensors (NaN wins)."""
    a, b = self._broadcasted(y)
    return a._alu(_MAX, b) if a.dtype != dtypes.bool else a | b
  def minimum(self, y) -> Tensor:
    """Elementwise smaller of two tensors (NaN wins)."""
    a, b = self._broadcasted(y)
    if a.dtype == dtypes.bool: return a & b
    # ints by a select, exact, with no negation: ptxas (CUDA 13.0, sm_90) miscompiled -max(-x, 2) summed into a max
    # (an argmax of x.minimum(-2) gave 4 of 4 rows: fuzz seed 31128 on CUDA)
    if a.dtype.is_int(): return (a < b).where(a, b)
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
  def __lt__(self, y) -> Tensor: return self._binop(_CMPLT, y)
  def __gt__(self, y) -> Tensor: return self._binop(_CMPLT, y, reverse=True)
  def __eq__(self, y) -> Tensor: return self._binop(_CMPEQ, y)  # type: ignore[override]
  def __ne__(self, y) -> Tensor: return self._binop(_CMPNE, y)  # type: ignore[override]
  def __le__(self, y) -> Tensor: return (self < y) | (self == y)
  def __ge__(self, y) -> Tensor: return (self > y) | (self == y)
  def eq(self, other) -> Tensor:
    """torch's name for ==: elementwise equality, as bools."""
    return self == other
  def ne(self, other) -> Tensor:
    """torch's name for !=: elementwise inequality, as bools."""
    return self != other
  def lt(self, other) -> Tensor:
    """torch's name for <, as bools."""
    return self < other
  def le(self, other) -> Tensor:
    """torch's name for <=, as bools."""
    return self <= other
  def gt(self, other) -> Tensor:
    """torch's name for >, as bools."""
    return self > other
  def ge(self, other) -> Tensor:
    """torch's name for >=, as bools."""
    return self >= other
  def _bitop(self, op: Ops, y, reverse=False) -> Tensor:
    a, b = self._broadcasted(y, reverse)
    if a.dtype.is_float(): raise TypeError(f"bitwise {op.name.lower()} is not defined for {a.dtype}")
    return a._alu(op, b)
  def bitwise_and(self, y) -> Tensor:
    """Elementwise & of ints or bools."""
    return self._bitop(_AND, y)
  def bitwise_or(self, y) -> Tensor:
    """Elementwise | of ints or bools."""
    return self._bitop(_OR, y)
  def bitwise_xor(self, y) -> Tensor:
    """Elementwise ^ of ints or bools."""
    return self._bitop(_XOR, y)
  def bitwise_not(self) -> Tensor:
    """Elementwise ~ of ints or bools."""
    if self.dtype.is_float(): raise TypeError(f"bitwise not is not defined for {self.dtype}")
    return self._bitop(_XOR, True if self.dtype == dtypes.bool else -1 if not self.dtype.is_unsigned() else 2**(8*self.dtype.itemsize)-1)
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
    return self._bitop(_SHL, n)
  def rshift(self, n) -> Tensor:
    """Elementwise x >> n."""
    return self._bitop(_SHR, n)

  # unary math
  def _new_value(self) -> Tensor:
    """A new tensor holding this one's current value: what an op returns when it has nothing to compute (trunc of
    ints, a pad of zeros). PyTorch returns a new tensor there too, so later writes to this one must not show in it;
    no kernel runs unless this one is written while the new one still needs the old contents."""
    return Tensor(self.uop)
  def _float(self) -> Tensor: return self if self.dtype.is_float() else self.cast(dtypes.default_float)
  def _math(self, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """fn (a composite of several ops) on this tensor as floats: float16 and bfloat16 go through float32 and round once
    at the end, as PyTorch's kernels do, instead of rounding after every step."""
    x = self._float()
    return fn(x.cast(dtypes.float32)).cast(x.dtype) if x.dtype in (dtypes.float16, dtypes.bfloat16) else fn(x)
  def neg(self) -> Tensor:
    """Elementwise -x (logical not for bools)."""
    return self.logical_not() if self.dtype == dtypes.bool else self._alu(_NEG)
  def exp2(self) -> Tensor:
    """Elementwise 2**x."""
    return self._float()._alu(_EXP2)
  def log2(self) -> Tensor:
    """Elementwise base-2 logarithm."""
    return self._float()._alu(_LOG2)
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
    return self._float()._alu(_SQRT)
  def rsqrt(self) -> Tensor:
    """Elementwise 1/sqrt(x)."""
    return self._math(lambda x: x.sqrt().reciprocal())
  def reciprocal(self) -> Tensor:
    """Elementwise 1/x."""
    return self._float()._alu(_RECIPROCAL)
  def sin(self) -> Tensor:
    """Elementwise sine."""
    return self._float()._alu(_SIN)
  def cos(self) -> Tensor:
    """Elementwise cosine."""
    return self._float()._alu(_COS)
  def tan(self) -> Tensor:
    """Elementwise tangent."""
    return self._math(lambda x: x.sin() / x.cos())
  def trunc(self) -> Tensor:
    """Round toward zero to an integer value."""
    return self._new_value() if not self.dtype.is_float() else self._alu(_TRUNC)
  def floor(self) -> Tensor:
    """Round down to an integer value."""
    if not self.dtype.is_float(): return self._new_value()
    t = self.trunc()
    return t - (self < t).cast(self.dtype)
  def ceil(self) -> Tensor:
    """Round up to an integer value."""
    if not self.dtype.is_float(): return self._new_value()
    t = self.trunc()
    return t + (self > t).cast(self.dtype)
  def round(self) -> Tensor:
    """Round half to even, as PyTorch and NumPy do."""
    if not self.dtype.is_float(): return self._new_value()
    f = self.floor()
    diff = self - f
    up = (diff > 0.5) | ((diff == 0.5) & (f.mod(2) != 0))
    return f + up.cast(self.dtype)
  def abs(self) -> Tensor:
    """|x|; for floats x * sign(x), so the gradient at 0 is 0 as in PyTorch, and NaN stays NaN."""
    if self.dtype.is_unsigned() or self.dtype == dtypes.bool: return self._new_value()
    return self * self.sign() if self.dtype.is_float() else (self < 0).where(-self, self)
  def sign(self) -> Tensor:
    """-1, 0 or 1 by the sign of x (NaN stays NaN)."""
    if self.dtype == dtypes.bool: return self._new_value()
    return (self > 0).cast(self.dtype) - (self < 0).cast(self.dtype) if not self.dtype.is_float() else \
      (self > 0).where(1.0, (self < 0).where(-1.0, self * 0)).cast(self.dtype)
  def square(self) -> Tensor:
    """Elementwise x*x."""
    return self * self
  def relu(self) -> Tensor:
    """max(x, 0), NaN kept."""
    return self._binop(_MAX, 0)  # maximum(0) without its bool case: with the int 0, even a bool tensor promotes to int64
  def sigmoid(self) -> Tensor:
    """1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below: from z = e^-|x| <= 1, so nothing overflows, the limits at
    -+inf are exactly 0 and 1, and the gradient z / (1 + z)^2 stays finite."""
    def sigmoid(x: Tensor) -> Tensor:
      pos = x >= 0
      z = pos.where(-x, x).exp()
      return pos.where(1.0, z) / (1 + z)
    return self._math(sigmoid)
  def tanh(self) -> Tensor:
    """float64: -expm1(-2|x|) / (2 + expm1(-2|x|)) with x's sign, accurate near 0. Other floats: an odd polynomial on
    |x| < 0.625 (Cephes' tanhf coefficients), 1 - 2 / (e^2|x| + 1) beyond -- one exp and one division, where expm1's
    accuracy trick costs a log and two more divisions (gelu over 2^28 floats on a GPU was bound by them). |x| is clipped
    at 10, past which tanh rounds to +-1 in float32: exactly +-1, gradient 0, at +-inf."""
    def tanh(x: Tensor) -> Tensor:
      pos = x >= 0
      if x.dtype == dtypes.float64:
        m = pos.where(-2.0 * x, 2.0 * x).expm1()
        t = -m / (m + 2)
        return pos.where(t, -t)
      ax = pos.where(x, -x).minimum(10.0)
      # the polynomial at x clipped to its own range: elsewhere unused, but its gradient must stay finite (0 * inf)
      x = x.clip(-0.625, 0.625)
      z = x * x
      poly = x * (1.0 + z * ((((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z + 1.33314422036e-1) * z - 3.33332819422e-1))
      big = 1.0 - 2.0 / ((2.0 * ax).exp() + 1.0)
      return (ax < 0.625).where(poly, pos.where(big, -big))
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
    """x * Phi(x); at -inf the limit 0 (not -inf * 0), and the tanh form's cubic is clipped where tanh is already +-1.
    The tanh form is computed as x * sigmoid(2u), the same function (0.5 (1 + tanh u) = sigmoid(2u)): one exp and one
    division, and no cancellation in 1 + tanh u where u is very negative."""
    if approximate not in ("none", "tanh"): raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    def gelu(x: Tensor) -> Tensor:
      xf = (x == -math.inf).where(0.0, x)
      if approximate == "none": return 0.5 * xf * (1 + (x * (1 / math.sqrt(2))).erf())
      xc = x.clip(-100.0, 100.0)
      return xf * (2 * math.sqrt(2 / math.pi) * (xc + 0.044715 * xc * xc * xc)).sigmoid()
    return self._math(gelu)
  def silu(self) -> Tensor:
    """x * sigmoid(x)."""
    return self._math(lambda x: x * x.sigmoid())
  swish = silu
  def cast(self, dtype) -> Tensor:
    """Convert the values to another dtype (ints wrap, floats round)."""
    dt = _to_dtype(dtype)
    return self if dt == (u := self.uop).dtype else _value(u.cast(dt))
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
  def bfloat16(self) -> Tensor:
    """Cast to bfloat16."""
    return self.cast(dtypes.bfloat16)
  def short(self) -> Tensor:
    """Cast to int16."""
    return self.cast(dtypes.int16)
  def char(self) -> Tensor:
    """Cast to int8."""
    return self.cast(dtypes.int8)
  def byte(self) -> Tensor:
    """Cast to uint8."""
    return self.cast(dtypes.uint8)

  # in place, as in PyTorch: the tensor itself (its storage, or its base for a view) takes the result, so aliases and
  # views see it; on a leaf that requires grad only under no_grad()
  def _inplace(self, value, op: str) -> Tensor:
    if no_grad.enabled and self._leaf_that_requires_grad():
      raise RuntimeError(f"{op} on a leaf tensor that requires grad (or a view of one) outside no_grad(): the gradient would not see the change "
                         "(PyTorch forbids it too); write the update inside `with no_grad():`, or use assign()")
    if isinstance(value, Tensor) and value.dtype != self.dtype and not _can_cast(value.dtype, self.dtype):
      raise TypeError(f"{op}: the result is {value.dtype.name}, which this {self.dtype.name} tensor cannot hold without loss (PyTorch: result "
                      f"type can't be cast to the desired output type); compute out of place, or .to({value.dtype.name}) first")
    return self.assign(value)
  def __iadd__(self, y): return self._inplace(self + y, "+=")
  def __isub__(self, y): return self._inplace(self - y, "-=")
  def __imul__(self, y): return self._inplace(self * y, "*=")
  def __itruediv__(self, y): return self._inplace(self / y, "/=")
  def __ifloordiv__(self, y): return self._inplace(self // y, "//=")
  def __imod__(self, y): return self._inplace(self % y, "%=")
  def __ipow__(self, y): return self._inplace(self ** y, "**=")
  def __iand__(self, y): return self._inplace(self & y, "&=")
  def __ior__(self, y): return self._inplace(self | y, "|=")
  def __ixor__(self, y): return self._inplace(self ^ y, "^=")
  def __ilshift__(self, y): return self._inplace(self << y, "<<=")
  def __irshift__(self, y): return self._inplace(self >> y, ">>=")
  def add_(self, y, alpha=1) -> Tensor:
    """In place: self += alpha * y."""
    return self._inplace(self.add(y, alpha), "add_")
  def sub_(self, y, alpha=1) -> Tensor:
    """In place: self -= alpha * y."""
    return self._inplace(self.sub(y, alpha), "sub_")
  def mul_(self, y) -> Tensor:
    """In place: self *= y."""
    return self._inplace(self * y, "mul_")
  def div_(self, y) -> Tensor:
    """In place: self /= y."""
    return self._inplace(self / y, "div_")
  def clamp_(self, min=None, max=None) -> Tensor:
    """In place: clamp to [min, max]."""
    return self._inplace(self.clip(min, max), "clamp_")
  def fill_(self, value) -> Tensor:
    """In place: every element becomes `value`."""
    return self._inplace(self.full_like(value), "fill_")
  def zero_(self) -> Tensor:
    """In place: every element becomes 0."""
    return self.fill_(0)
  def copy_(self, src, non_blocking: bool = False) -> Tensor:
    """In place: take src's values (broadcast to this shape, cast to this dtype even with loss, copied from its device),
    as PyTorch's copy_."""
    if not isinstance(src, Tensor): src = Tensor(src, device=self.device)
    return self._inplace(src.to(self.device, self.dtype), "copy_")

  # in-place initialisers, drawn from the global generator (Tensor.manual_seed), as PyTorch's
  def _draw(self, op: str, generator, floats_only: bool):
    if generator is not None: raise TypeError(f"{op}: lucidgrad draws from its one global generator (seed it with Tensor.manual_seed); generator= is not supported")
    if floats_only and not self.dtype.is_float(): raise TypeError(f"{op}: needs a float tensor, this one is {self.dtype.name} (PyTorch refuses too)")
  def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator=None) -> Tensor:
    """In place: samples of a normal distribution with this mean and standard deviation."""
    self._draw("normal_", generator, True)
    if std < 0: raise ValueError(f"normal_: std must be >= 0, got {std}")
    return self._inplace(Tensor.normal(*self.shape, mean=mean, std=std, dtype=self.dtype, device=self.device), "normal_")
  def uniform_(self, from_: float = 0.0, to: float = 1.0, *, generator=None) -> Tensor:
    """In place: samples of the uniform distribution on [from_, to)."""
    self._draw("uniform_", generator, True)
    if from_ > to: raise ValueError(f"uniform_: needs from_ <= to, got from_={from_} to={to}")
    return self._inplace(Tensor.uniform(*self.shape, low=from_, high=to, dtype=self.dtype, device=self.device), "uniform_")
  def bernoulli_(self, p: float | Tensor = 0.5, *, generator=None) -> Tensor:
    """In place: 1 with probability p (a number, or a tensor of probabilities broadcast to this shape), else 0."""
    self._draw("bernoulli_", generator, False)
    if not isinstance(p, Tensor) and not 0 <= p <= 1: raise ValueError(f"bernoulli_: p must be in [0, 1], got {p}")
    return self._inplace((Tensor.rand(*self.shape, device=self.device) < p).cast(self.dtype), "bernoulli_")
  def random_(self, *bounds: int, generator=None) -> Tensor:
    """In place: random integers, as PyTorch's random_(): random_() draws from [0, 2**mantissa] for floats and
    [0, max] for ints, random_(to) from [0, to), random_(from_, to) from [from_, to). Each is 64 random bits modulo the
    range's size: uniform up to a bias below size / 2**64."""
    self._draw("random_", generator, False)
    if len(bounds) > 2 or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
      raise TypeError(f"random_: takes at most two ints (from_, to) or one (to), got {bounds}")
    dt = self.dtype
    top = 2 if dt == dtypes.bool else 2 ** {dtypes.float16: 11, dtypes.bfloat16: 8, dtypes.float32: 24, dtypes.float64: 53}[dt] + 1 if dt.is_float() \
      else int(np.iinfo(dt.np).max) + 1
    low, high = (0, top) if not bounds else (0, bounds[0]) if len(bounds) == 1 else bounds
    if low >= high: raise ValueError(f"random_: needs from_ < to, got from_={low} to={high}")
    if not dt.is_float() and dt != dtypes.bool and (low < np.iinfo(dt.np).min or high > top):
      raise ValueError(f"random_: [{low}, {high}) does not fit {dt.name} ({np.iinfo(dt.np).min} to {top - 1})")
    n, u64 = self.numel(), dtypes.uint64
    bits = Tensor._random_bits(2 * n, self.device)
    v = (bits[:n].cast(u64) << 32) | bits[n:].cast(u64)
    if high - low < 2 ** 64: v = v % (high - low)
    # floats: exact below 2**mantissa; ints: the sum wraps modulo 2**64 to low + v
    draw = (v.cast(dtypes.float64) + low).cast(dt) if dt.is_float() else (v + low % 2 ** 64).cast(dt)
    return self._inplace(draw.reshape(self.shape), "random_")
  __add__, __mul__, __sub__, __pow__ = add, mul, sub, pow
  def __radd__(self, y): return self._binop(_ADD, y, True)
  def __rsub__(self, y): return self._binop(_SUB, y, True)
  def __rmul__(self, y): return self._binop(_MUL, y, True)
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
  def __rand__(self, y): return self._bitop(_AND, y, True)
  def __ror__(self, y): return self._bitop(_OR, y, True)
  def __rxor__(self, y): return self._bitop(_XOR, y, True)
  def __invert__(self): return self.bitwise_not()
  def __lshift__(self, n): return self.lshift(n)
  def __rshift__(self, n): return self.rshift(n)
  def __matmul__(self, y): return self.matmul(y)
  def __rmatmul__(self, y): return Tensor(y).matmul(self) if not isinstance(y, Tensor) else y.matmul(self)

  # ---- movement ----
  def _axis(self, axis: int, ndim: int | None = None) -> int:
    n = len(self.uop.shape) if ndim is None else ndim
    if type(axis) is not int and not isinstance(axis, (int, np.integer)): raise TypeError(f"axis must be an int, got {axis!r}")
    if not -(m := n if n > 1 else 1) <= axis < m: raise IndexError(f"axis {axis} is out of range for a tensor of {n} dimensions (shape {self.shape})")
    return int(axis) % m
  def reshape(self, *shape) -> Tensor:
    """The same values in a new shape (one axis may be -1)."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    if shape_is_symbolic(shape) or shape_is_symbolic(self.shape): return self._symbolic_reshape(shape)
    if sum(1 for s in shape if s == -1) > 1: raise ValueError(f"reshape: only one dimension can be -1, got {shape}")
    if any(not isinstance(s, (int, np.integer)) or s < -1 for s in shape): raise ValueError(f"reshape: bad shape {shape}")
    if -1 in shape:
      known = prod(s for s in shape if s != -1)
      if known == 0 or self.numel() % known:
        raise ValueError(f"cannot reshape tensor of shape {self.shape} ({self.numel()} elements) into {shape}: no size for the -1 fits")
      shape = tuple(self.numel() // known if s == -1 else s for s in shape)
    shape = tuple(int(s) for s in shape)
    if prod(shape) != self.numel():
      raise ValueError(f"cannot reshape tensor of shape {self.shape} ({self.numel()} elements) into {shape} ({prod(shape)} elements); "
                       "the sizes must multiply to the same count (one -1 may stand for the size that fits)")
    return self._view(Ops.RESHAPE, shape)
  view = reshape
  def _symbolic_reshape(self, shape: tuple) -> Tensor:
    """A reshape where a size is an expression of Variables: each symbolic axis must stay whole (docs/design/0029)."""
    from lucidgrad.schedule.symbolic import symbolic_reshape_ok
    if -1 in [s for s in shape if not isinstance(s, UOp)]:
      known = prod(s for s in shape if isinstance(s, UOp) or s != -1)
      shape = tuple(ssimplify(self.numel() // known) if not isinstance(s, UOp) and s == -1 else s for s in shape)
    shape = tuple(s if isinstance(s, UOp) else int(s) for s in shape)
    if not symbolic_reshape_ok(self.shape, shape):
      raise ValueError(f"reshape: cannot reshape symbolic shape {sym_str(self.shape)} into {sym_str(shape)}: a symbolic axis must stay whole "
                       "(the same symbolic sizes in the same order, the other sizes between them multiplying to the same counts)")
    return self._view(Ops.RESHAPE, shape)
  def permute(self, *order) -> Tensor:
    """Reorder the axes."""
    order = tuple(order[0]) if len(order) == 1 and isinstance(order[0], (tuple, list)) else order
    if len(order) != (n := len(self.uop.shape)): raise ValueError(f"permute: got {len(order)} axes {order} for a tensor of shape {self.shape}")
    order = tuple([self._axis(o, n) for o in order])
    if sorted(order) != list(range(n)): raise ValueError(f"permute: {order} is not a permutation of the axes of shape {self.shape}")
    return self._view(Ops.PERMUTE, order)
  def transpose(self, dim0: int = -2, dim1: int = -1) -> Tensor:
    """Swap two axes."""
    order = list(range(n := len(self.uop.shape)))
    a, b = self._axis(dim0, n), self._axis(dim1, n)
    order[a], order[b] = order[b], order[a]
    return self.permute(order)
  @property
  def T(self) -> Tensor:
    """The tensor with its axes reversed. As in PyTorch, meant for matrices: other ranks warn (use mT or permute)."""
    if self.ndim != 2:
      warnings.warn(f"Tensor.T on a {self.ndim}-D tensor reverses all its axes; PyTorch deprecates .T for tensors that are not 2-D: "
                    "use .mT to transpose the last two axes, or .permute()", UserWarning, stacklevel=2)
    return self.permute(tuple(reversed(range(self.ndim))))
  @property
  def mT(self) -> Tensor:
    """The last two axes swapped (a batch of matrices transposed)."""
    if self.ndim < 2: raise RuntimeError(f"tensor.mT needs a matrix or a batch of matrices (2 or more dimensions), got shape {self.shape}")
    return self.transpose(-2, -1)
  @property
  def mH(self) -> Tensor:
    """The conjugate transpose of a batch of matrices: mT (lucidgrad's dtypes are real)."""
    if self.ndim < 2: raise RuntimeError(f"tensor.mH needs a matrix or a batch of matrices (2 or more dimensions), got shape {self.shape}")
    return self.transpose(-2, -1)
  @property
  def H(self) -> Tensor:
    """The conjugate transpose of a matrix: T of a 2-D tensor (lucidgrad's dtypes are real)."""
    if self.ndim not in (0, 2): raise RuntimeError(f"tensor.H needs a matrix (2 dimensions), got shape {self.shape}; use .mH for a batch")
    return self if self.ndim == 0 else self.transpose(0, 1)
  def expand(self, *shape) -> Tensor:
    """Broadcast size-1 axes to a larger shape (-1 keeps an axis)."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    if len(shape) < self.ndim: raise ValueError(f"expand: target {shape} has fewer dimensions than {self.shape}")
    padded = (1,) * (len(shape) - self.ndim) + self.shape
    new = tuple(p if s == -1 else s for p, s in zip(padded, shape))
    if any(p != 1 and p != n for p, n in zip(padded, new)): raise ValueError(f"expand: cannot expand shape {self.shape} to {shape}: only axes of size 1 expand (repeat() copies others)")
    return (self._view(Ops.RESHAPE, padded) if len(padded) != self.ndim else self)._view(Ops.EXPAND, new)
  def shrink(self, arg) -> Tensor:
    """Keep [start, end) of each axis; None keeps the whole axis."""
    if len(arg) != self.ndim: raise ValueError(f"shrink: got {len(arg)} ranges for shape {self.shape}")
    if any(isinstance(x, UOp) for a in arg if a is not None for x in a) or shape_is_symbolic(self.shape): return self._symbolic_shrink(arg)
    arg = tuple((0, s) if a is None else (int(a[0]), int(a[1])) for a, s in zip(arg, self.shape))
    if any(not 0 <= b <= e <= s for (b, e), s in zip(arg, self.shape)): raise ValueError(f"shrink: {arg} is out of bounds for shape {self.shape}")
    return self._view(Ops.SHRINK, arg)
  def _symbolic_shrink(self, arg) -> Tensor:
    """A shrink whose bounds (or whose tensor's sizes) are expressions of Variables: checked over the Variables' whole
    ranges, so every value they can be bound to is in bounds (docs/design/0029)."""
    out = []
    for a, s in zip(arg, self.shape):
      b, e = (0, s) if a is None else a
      b, e = (x if isinstance(x, UOp) else int(x) for x in (b, e))
      for x in (b, e):
        if isinstance(x, UOp) and (x.dtype != dtypes.int32 or any(u.op not in (Ops.DEFINE_VAR, Ops.BIND, Ops.CONST) + tuple(GroupOp.ALU) for u in x.toposort)):
          raise TypeError(f"shrink: a bound must be an int or an int expression of Variables, got {x}")
      if smin(b) < 0 or smin(ssimplify(e - b)) < 0 or smin(ssimplify(s - e)) < 0:
        raise ValueError(f"shrink: the range ({sym_str(b)}, {sym_str(e)}) can leave the axis of size {sym_str(s)} for some value of its Variables "
                         f"(start can be {smin(b)}, end {smax(e)}, length {smin(ssimplify(e - b))})")
      out.append((b, e))
    return self._view(Ops.SHRINK, tuple(out))
  def flip(self, axis) -> Tensor:
    """Reverse the order along the given axes."""
    axes = tuple(self._axis(a) for a in (axis if isinstance(axis, (tuple, list)) else (axis,)))
    if len(set(axes)) != len(axes): raise ValueError(f"flip: repeated axis in {axis}")
    if any(isinstance(self.shape[a], UOp) for a in axes): raise ValueError(f"flip: axis of symbolic size in shape {sym_str(self.shape)} cannot be flipped")
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
    if s > e: raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {self.shape}")
    return self.reshape(self.shape[:s] + (prod(self.shape[s:e+1]),) + self.shape[e+1:])
  # ---- reductions ----
  # torch's names: `dim=` and `keepdim=`; `axis=` is accepted too (tinygrad's and NumPy's spelling), never both
  def _axes(self, axis) -> tuple[int, ...]:
    n = len(self.uop.shape)
    if axis is None: return tuple(range(n))
    axes = tuple([self._axis(a, n) for a in (axis if isinstance(axis, (tuple, list)) else (axis,))]) if n else ()
    if len(set(axes)) != len(axes): raise ValueError(f"repeated axis in {axis}")
    return axes
  @staticmethod
  def _dim(dim, axis, op: str):
    """The axes named by torch's `dim=` or by `axis=`: one of them, not both."""
    if axis is None: return dim
    if dim is not None: raise TypeError(f"{op}: got both dim={dim!r} and axis={axis!r}; they name the same thing, pass one")
    return axis
  def _reduce(self, op: Ops, axis=None, keepdim=False) -> Tensor:
    axes = self._axes(axis)
    if op is Ops.MAX and any(self.shape[a] == 0 for a in axes):
      raise ValueError(f"max/min over axes {axes} of shape {self.shape}: an empty axis has no maximum or minimum")
    out = _value(self.uop.reduce_axis(op, axes))
    return out if keepdim else out._view(Ops.RESHAPE, tuple([s for i, s in enumerate(self.shape) if i not in axes]))
  def sum(self, dim=None, keepdim=False, dtype=None, *, axis=None) -> Tensor:
    """Sum over `dim` (an int or a tuple; all axes when None). Ints and bools (unsigned ones too) sum into int64, as in
    PyTorch; half floats accumulate in float32."""
    return self._accumulate(Ops.ADD, self._dim(dim, axis, "sum"), keepdim, dtype)
  def prod(self, dim=None, keepdim=False, dtype=None, *, axis=None) -> Tensor:
    """Product over `dim` (ints give int64). A tuple of axes is accepted too (torch takes one)."""
    return self._accumulate(Ops.MUL, self._dim(dim, axis, "prod"), keepdim, dtype)
  def _accumulate(self, op: Ops, axis, keepdim, dtype) -> Tensor:
    acc = _to_dtype(dtype) or (dtypes.int64 if self.dtype.is_int() or self.dtype == dtypes.bool else self.dtype)
    if acc in (dtypes.float16, dtypes.bfloat16): return self.cast(dtypes.float32)._reduce(op, axis, keepdim).cast(acc)
    return self.cast(acc)._reduce(op, axis, keepdim)
  def _extreme(self, axis, keepdim: bool, largest: bool) -> Tensor:
    """The largest (smallest) values over `axis` (all axes when None) as a plain tensor; ties share the gradient evenly."""
    if self.dtype == dtypes.bool: return self.cast(dtypes.uint8)._extreme(axis, keepdim, largest).cast(dtypes.bool)
    if largest: return self._reduce(Ops.MAX, axis, keepdim)
    if self.dtype.is_unsigned(): return ~((~self)._reduce(Ops.MAX, axis, keepdim))
    return -((-self)._reduce(Ops.MAX, axis, keepdim))
  def _max_or_min(self, dim, keepdim: bool, axis, largest: bool):
    op = "max" if largest else "min"
    if isinstance(dim, Tensor):
      if keepdim or axis is not None: raise TypeError(f"{op}(other): the elementwise form takes no keepdim or axis")
      return self.maximum(dim) if largest else self.minimum(dim)
    if axis is not None or dim is None or isinstance(dim, (tuple, list)): return self._extreme(self._dim(dim, axis, op), keepdim, largest)
    return self._values_indices(op, self._extreme(dim, keepdim, largest), self._argext(dim, keepdim, largest), dim, keepdim)
  def max(self, dim=None, keepdim=False, *, axis=None):
    """torch's three forms: `max()` the largest value (0-d); `max(dim)` a named tuple (values, indices) over one axis,
    the first index on ties and the gradient to it alone; `max(other)` the elementwise maximum. A tuple of axes, or
    `axis=` (tinygrad's spelling), gives a plain tensor of the largest values, ties sharing the gradient as amax does."""
    return self._max_or_min(dim, keepdim, axis, True)
  def min(self, dim=None, keepdim=False, *, axis=None):
    """The smallest value: the forms of `max`, with (values, indices) of the minimum for `min(dim)`."""
    return self._max_or_min(dim, keepdim, axis, False)
  def mean(self, dim=None, keepdim=False, dtype=None, *, axis=None) -> Tensor:
    """Average over `dim` (ints give floats, where torch raises); `dtype` casts the input first, as in torch."""
    axis, x = self._dim(dim, axis, "mean"), self if dtype is None else self.cast(dtype)
    n = prod(x.shape[a] for a in x._axes(axis))
    if isinstance(n, UOp):  # a count of a symbolic size: the Variables' values, read in the kernel (docs/design/0029)
      from lucidgrad.schedule.symbolic import tensor_int
      return x._math(lambda x: (s := x.sum(axis, keepdim)) / Tensor(tensor_int(n, x.device)).cast(s.dtype))
    return x._math(lambda x: x.sum(axis, keepdim) / n if n else x.sum(axis, keepdim) * math.nan)
  @staticmethod
  def _correction(unbiased, correction, op: str) -> float:
    if unbiased is not None and correction is not None: raise TypeError(f"{op}: pass unbiased or correction, not both")
    return (1 if unbiased is None or unbiased else 0) if correction is None else correction
  def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None) -> Tensor:
    """Variance over `dim`, dividing by n - correction (1 by default: Bessel's; unbiased=False is correction 0), as in
    torch. NaN where n - correction <= 0."""
    axis, correction = self._dim(dim, axis, "var"), self._correction(unbiased, correction, "var")
    n = prod(self.shape[a] for a in self._axes(axis))
    def var(x: Tensor) -> Tensor:
      sq = (x - x.mean(axis, keepdim=True)).square().sum(axis, keepdim)
      return sq / (n - correction) if n - correction > 0 else sq * math.nan
    return self._math(var)
  def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None) -> Tensor:
    """Standard deviation over `dim`: the square root of `var` (same arguments)."""
    return self.var(self._dim(dim, axis, "std"), unbiased, keepdim, correction=correction).sqrt()
  def _argext(self, axis, keepdim: bool, largest: bool) -> Tensor:
    """argmax (largest) or argmin of `axis`."""
    if largest: return self._argmax(axis, keepdim)
    return (self.logical_not() if self.dtype == dtypes.bool else ~self if self.dtype.is_unsigned() else -self)._argmax(axis, keepdim)
  def _argmax(self, axis, keepdim) -> Tensor:
    if axis is None and self.numel() == 0: raise ValueError(f"argmax/argmin of an empty tensor of shape {self.shape}")
    if axis is None: return self.flatten()._argmax(0, keepdim=False) if not keepdim else self.flatten()._argmax(0, False).reshape((1,)*self.ndim)
    a = self._axis(axis)
    n = self.shape[a] if self.ndim else 1
    if n == 0: raise ValueError(f"argmax/argmin of an empty axis {a} of shape {self.shape}")
    rev = (n - Tensor.arange(n, dtype=dtypes.int32, device=self.device)).reshape((n,) + (1,) * (self.ndim - a - 1))
    hit = self == self._extreme(a, True, True)
    if self.dtype.is_float(): hit = hit | (self != self)  # a NaN is the max (MAX keeps it) but never equals it: the first NaN wins, as in torch
    return (n - (hit.cast(dtypes.int32) * rev)._extreme(a, keepdim, True)).cast(dtypes.int64)
  def argmax(self, dim=None, keepdim=False, *, axis=None) -> Tensor:
    """Index of the largest value along `dim` (the first one on ties, the first NaN if any); the flat index when None."""
    return self._argext(self._dim(dim, axis, "argmax"), keepdim, True)
  def argmin(self, dim=None, keepdim=False, *, axis=None) -> Tensor:
    """Index of the smallest value along `dim` (the first one on ties, the first NaN if any); the flat index when None."""
    return self._argext(self._dim(dim, axis, "argmin"), keepdim, False)
  def _max_shift(self, axis) -> Tensor:
    """The max along axis (kept), detached: a shift that cancels in softmax and log-sum-exp, so it adds nothing to the
    gradient. 0 where an axis is empty: it has no max, and softmax of it is empty, its log-sum-exp -inf (as in torch)."""
    axes = self._axes(axis)
    if any(self.shape[a] == 0 for a in axes):
      return Tensor.zeros(*(1 if i in axes else s for i, s in enumerate(self.shape)), dtype=self.dtype, device=self.device)
    return self._extreme(axis, True, True).detach()
  def logsumexp(self, dim=None, keepdim=False, *, axis=None) -> Tensor:
    """log(sum(exp(x))) over `dim`, shifted by the max so nothing overflows: -inf for a row of -inf, inf with an inf."""
    axis = self._dim(dim, axis, "logsumexp")
    def logsumexp(x: Tensor) -> Tensor:
      # the shift cancels in value and gradient, so it is detached: the gradient is exactly softmax, with no max-reduce
      # derivative in it; rows of -inf (or inf) must not become inf - inf
      m = x._max_shift(axis)
      m = (m.abs() == math.inf).where(0, m)
      out = (x - m).exp().sum(axis, keepdim=True).log() + m
      return out if keepdim else out.squeeze(self._axes(axis)) if self.ndim else out
    return self._math(logsumexp)
  def softmax(self, dim=None, dtype=None, *, axis=None) -> Tensor:
    """exp(x) / sum(exp(x)) along `dim` (the last axis when None), shifted by the max so nothing overflows; `dtype`
    casts the input first, as in torch."""
    axis, x = self._dim(dim, axis, "softmax"), self if dtype is None else self.cast(dtype)
    axis = -1 if axis is None else axis
    def softmax(x: Tensor) -> Tensor:
      e = (x - x._max_shift(axis)).exp()
      return e / e.sum(axis, keepdim=True)
    return x._math(softmax)
  def log_softmax(self, dim=None, dtype=None, *, axis=None) -> Tensor:
    """x - logsumexp(x) along `dim` (the last axis when None), shifted by the max: finite for finite x, however large."""
    axis, x = self._dim(dim, axis, "log_softmax"), self if dtype is None else self.cast(dtype)
    axis = -1 if axis is None else axis
    def log_softmax(x: Tensor) -> Tensor:
      m = x - x._max_shift(axis)
      return m - m.exp().sum(axis, keepdim=True).log()
    return x._math(log_softmax)

  # ---- linear algebra ----
  def matmul(self, w: Tensor) -> Tensor:
    """PyTorch's matmul: 1-D operands are promoted and the extra axis dropped; batch axes broadcast."""
    if not isinstance(w, Tensor): w = Tensor(w, device=self.device)
    if self.ndim == 0 or w.ndim == 0: raise ValueError(f"matmul: both operands need at least 1 dimension, got {self.shape} and {w.shape}")
    x, y = (self.reshape(1, -1) if self.ndim == 1 else self), (w.reshape(-1, 1) if w.ndim == 1 else w)
    if x.shape[-1] != y.shape[-2]: raise ValueError(f"matmul: shapes {self.shape} and {w.shape} do not align ({x.shape[-1]} != {y.shape[-2]}): the first's last "
                                                     "dimension must equal the second's second-to-last (transpose one with .mT?)")
    try: broadcast_shape(x.shape[:-2], y.shape[:-2])
    except ValueError: raise ValueError(f"matmul: the batch axes of shapes {self.shape} and {w.shape} cannot be broadcast together") from None
    dt = promote_types(x.dtype, y.dtype)
    # half floats multiply and add in float32 (where a product of two halves is exact) and round once at the end
    acc = dtypes.float32 if dt in (dtypes.float16, dtypes.bfloat16) else dt
    x, y = x.cast(acc), y.cast(acc)
    if x.device != y.device: raise RuntimeError(f"tensors are on different devices: {x.device} and {y.device}; move one with .to()")
    yu = y.uop
    if y is w and w.ndim == 2 and (panels := _weight_panels(w, prod(x.shape[:-1]))) is not None:
      # the same matrix read from the weight's kept panels (_weight_panels): y[k, c*p + j] = panels[p, k, j]
      P, K, cols = panels.shape
      yu = panels.uop.permute((1, 0, 2)).reshape((K, P * cols))
      if P * cols != w.shape[1]: yu = yu.shrink(((0, K), (0, w.shape[1])))
    if acc.is_float() and not shape_is_symbolic(x.shape) and not shape_is_symbolic(yu.shape): out = _value(_product(x.uop, yu))
    else:  # ints sum in int64 (then cast back); a symbolic size reshapes by its own rules
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

def _product(xu: UOp, yu: UOp) -> UOp:
  """(x[..., None, :] * y.mT[..., None, :, :]).sum(-1) of two float nodes of one dtype, x (..., M, K) and y (..., K, N):
  the graph matmul's Tensor ops build -- the same nodes, so the same kernels -- without a Tensor and its view steps
  for each of the ten or so (GPT-2 builds 73 products a forward: a third of its graph's build time)."""
  if not no_grad.enabled:  # as the first view of each would (Tensor._view): no history under no_grad()
    if xu.requires_grad: xu = UOp(_DETACH, xu.dtype, (xu,))
    if yu.requires_grad: yu = UOp(_DETACH, yu.dtype, (yu,))
  n = len(yu.shape)
  xb = xu.reshape((*xu.shape[:-1], 1, xu.shape[-1]))
  yb = yu.permute((*range(n - 2), n - 1, n - 2)).reshape((*yu.shape[:-2], 1, yu.shape[-1], yu.shape[-2]))
  full = broadcast_shape(xb.shape, yb.shape)
  def expanded(u: UOp) -> UOp:  # Tensor._expand_to
    return u if u.shape == full else (u if len(u.shape) == len(full) else u.reshape((1,) * (len(full) - len(u.shape)) + u.shape)).expand(full)
  return expanded(xb).alu(Ops.MUL, expanded(yb)).reduce_axis(Ops.ADD, (len(full) - 1,)).reshape(full[:-1])

# ---- weights kept as panels (docs/design/0039) ----
PANEL_MIN_ROWS = 16     # rows of x that share a panel: fewer (a decode step's one row) keep the weight as it is
PACK_WEIGHTS = ContextVar("PACK_WEIGHTS", 1)

def _weight_panels(w: Tensor, rows: int) -> Tensor | None:
  """For x @ W.T with W a stored float32 matrix on a CPU (a Linear's weight: W.T is the view `w`): W's columns as
  panels (ceil(N/c), K, c) in one contiguous buffer (c = 32 on AVX-512), kept on W's storage for the version they
  were copied from, so a product reads each panel straight through -- no transposing copy per call -- and the kernel
  can fetch the next panel ahead (codegen/linearize.prefetch_next_block). Made the second time a product reads the same version (an
  inference loop); None the first time, and always under a JIT capture or for a weight an update rewrites every step
  (training), which would pay one copy per step for one read. The panels are a value of W's graph: gradients reach W
  (panels made without history, under no_grad(), are kept apart from those made with it)."""
  if not PACK_WEIGHTS.value or rows < PANEL_MIN_ROWS or capturing or w.dtype != dtypes.float32: return None
  if (u := w.uop).op is not Ops.PERMUTE or shape_is_symbolic(u.shape): return None
  src = u.src[0].src[0] if u.src[0].op is Ops.DETACH else u.src[0]
  if not is_buffer_view(src) or not is_current(src) or not (renderer := Device[u.device].renderer).prefetch: return None
  buf, key = buffer_of(_strip(src)), (_strip(src).arg[2], src.shape, u.requires_grad)
  if not buf._owned: return None  # memory handed in or shared out (DLPack): written where no version counts it
  kept: dict = buf.__dict__.setdefault("panels", {})
  if (panels := kept.get(key, False)) is False:  # seen once at this version: the plain product; older versions' go
    for old in [k for k in kept if k[0] != key[0]]: del kept[old]
    kept[key] = None
    return None
  if panels is None:
    # a panel's columns: two of the target's vectors, the product kernels' register block along the columns (32 on AVX-512)
    K, n, cols = *w.shape, 2 * max(renderer.vector_bytes, 16) // w.dtype.itemsize
    whole, rest = divmod(n, cols)
    panels = w.T[:whole * cols].reshape(whole, cols, K).permute(0, 2, 1)
    # a last panel padded with zero columns, joined on: a pad of the whole matrix would gate every panel's copy
    # (range splitting then cut each panel's columns where the last one ends: the logits' copy took 140 ms, now 39)
    if rest: panels = panels.cat(w.T[whole * cols:].pad(((0, cols - rest), (0, 0))).reshape(1, cols, K).permute(0, 2, 1))
    panels = kept[key] = panels.contiguous().realize()
  return panels

# ---- in place, the rest: `x.abs_()` is x taking x.abs()'s values, by the rules of add_ (no leaf that requires grad
# outside no_grad(); a result the dtype cannot hold raises). Made for every op here the Tensor has, so ops the mixins
# add get theirs; ops with their own (add_, mul_, clamp_, ...) keep it ----
_INPLACE_OPS = ("neg", "abs", "sign", "square", "sqrt", "rsqrt", "reciprocal", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p",
                "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "sigmoid", "relu", "erf",
                "trunc", "floor", "ceil", "round", "frac", "pow", "floor_divide", "fmod", "remainder", "atan2", "hypot", "copysign", "lerp",
                "clip", "masked_fill", "nan_to_num", "addcmul", "addcdiv", "tril", "triu", "bitwise_and", "bitwise_or", "bitwise_xor",
                "bitwise_not", "logical_not", "logical_and", "logical_or", "logical_xor")

def _inplace_method(name: str) -> Callable:
  op = getattr(Tensor, name)
  @functools.wraps(op)
  def method(self: Tensor, *args, **kwargs) -> Tensor: return self._inplace(op(self, *args, **kwargs), f"{name}_")
  method.__name__ = method.__qualname__ = f"{name}_"
  method.__doc__ = f"In place: this tensor takes the values of `{name}` (same arguments); views and aliases see the write."
  return method

for _name in _INPLACE_OPS:
  if hasattr(Tensor, _name) and not hasattr(Tensor, f"{_name}_"): setattr(Tensor, f"{_name}_", _inplace_method(_name))

# ---- conversions' arguments ----
_TYPE_NAMES = {dtypes.float32: "FloatTensor", dtypes.float64: "DoubleTensor", dtypes.float16: "HalfTensor", dtypes.bfloat16: "BFloat16Tensor",
               dtypes.uint8: "ByteTensor", dtypes.int8: "CharTensor", dtypes.int16: "ShortTensor", dtypes.int32: "IntTensor",
               dtypes.int64: "LongTensor", dtypes.bool: "BoolTensor", dtypes.uint16: "UInt16Tensor", dtypes.uint32: "UInt32Tensor",
               dtypes.uint64: "UInt64Tensor"}

def _to_args(who: str, args: tuple, kwargs: dict) -> tuple[str | None, DType | None, bool]:
  """(device, dtype, copy) from PyTorch's ways of calling to(): a device and/or a dtype (positional, in any order, or by
  keyword), another tensor (its device and dtype), then the flags non_blocking and copy."""
  kwargs = dict(kwargs)
  flags = [kwargs.pop("non_blocking", False), kwargs.pop("copy", False)]
  kwargs.pop("memory_format", None)
  device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
  if kwargs: raise TypeError(f"{who}(): unexpected keyword arguments {sorted(kwargs)}")
  bools = []
  for a in args:
    if isinstance(a, Tensor): device, dtype = a.device, a.dtype
    elif isinstance(a, bool): bools.append(a)
    elif isinstance(a, str) and not isinstance(getattr(dtypes, a, None), DType): device = a  # not a dtype's name: a device's (checked below)
    elif isinstance(a, (DType, str, np.dtype, type)): dtype = _to_dtype(a)
    elif a is not None: raise TypeError(f"{who}(): cannot move or cast to a {type(a).__name__} ({a!r:.50}); pass a device, a dtype or a Tensor")
  if len(bools) > 2: raise TypeError(f"{who}(): too many positional flags {bools} (non_blocking, copy)")
  flags[:len(bools)] = bools
  return Device.canonicalize(device), _to_dtype(dtype), bool(flags[1])

class GradFn:
  """What `t.grad_fn` is for a tensor computed from tensors that require grad: the name of the op that made it.
  lucidgrad differentiates the graph itself, so there are no backward objects to walk: only name() is there."""
  def __init__(self, name: str): self._name = name
  def name(self) -> str: return self._name
  def __repr__(self): return f"<{self._name} object>"

# ---- values from outside: foreign arrays, lists holding tensors ----
def _foreign_values(data, dtype: DType | None) -> tuple[np.ndarray, DType]:
  """An array with __dlpack__ (a torch tensor, a JAX or CuPy array) as host values Tensor() copies, read without a
  copy through DLPack (bfloat16 as float32 values), and the dtype to make: `dtype`, else its own. A torch tensor's
  requires_grad is not carried over (as torch.tensor(t) does not): pass requires_grad=True."""
  if getattr(data, "requires_grad", False) and hasattr(data, "detach"): data = data.detach()
  dev = data.__dlpack_device__() if hasattr(data, "__dlpack_device__") else (tensor_dlpack.KDL_CPU, 0)
  if dev[0] != tensor_dlpack.KDL_CPU and hasattr(data, "cpu"): data = data.cpu()
  arr, dt = tensor_dlpack.to_numpy(data)
  if dt == dtypes.bfloat16: arr = (arr.astype(np.uint32) << 16).view(np.float32)
  return arr, dtype or dt

def _tensors_in(data: list | tuple) -> list[Tensor]:
  """The Tensors anywhere in a nested list or tuple."""
  found, stack = [], [data]
  while stack:
    for x in stack.pop():
      if isinstance(x, Tensor): found.append(x)
      elif isinstance(x, (list, tuple)): stack.append(x)
  return found

def _tensor_scalars(data: list | tuple, tensors: list[Tensor], dtype: DType | None) -> tuple[list, DType]:
  """A nested list holding one-element Tensors as the same list of Python numbers, and its dtype as PyTorch infers
  it (each tensor counts with its dtype, each Python number as from_py): torch.tensor([t0, t1]) for 0-d tensors."""
  if (big := next((t for t in tensors if t.numel() != 1), None)) is not None:
    raise ValueError(f"a list of tensors becomes a tensor only if each has one element (as in PyTorch), one has shape {big.shape}; use Tensor.stack")
  Tensor.realize(*tensors)
  def scalars(x) -> tuple[Any, DType | None]:
    if isinstance(x, Tensor): return x.item(), x.dtype
    if not isinstance(x, (list, tuple)): return x, dtypes.from_py(x)
    out = [scalars(v) for v in x]
    dts = [d for _, d in out if d is not None]
    return [v for v, _ in out], (functools.reduce(lambda a, b: a if a == b else promote_types(a, b), dts) if dts else None)
  values, dt = scalars(data)
  return values, dtype or dt or dtypes.default_float

# ---- helpers that build graphs ----
def _host_np(dt: DType):
  """The NumPy dtype that holds `dt`'s values on the host: bfloat16 values travel as float32 until they are copied in."""
  return np.float32 if dt == dtypes.bfloat16 else dt.np

def _buffer_from_numpy(arr: np.ndarray, device: str, dtype: DType) -> UOp:
  if dtype == dtypes.bfloat16:  # round float values to bfloat16 bits
    from lucidgrad.dtype import f32_to_bf16_array
    arr = f32_to_bf16_array(arr)
  buf, view = UOp.new_buffer_view(device, arr.size, dtype, arr.shape)
  b = Buffer(device, arr.size, dtype)
  if arr.size: b.copyin(arr.ravel().view(np.uint8) if arr.dtype != np.bool_ else arr.astype(np.uint8).ravel())
  register_buffer(buf, b)
  return view

def _index_tensor(n: int, device: str) -> Tensor:
  """int32 [0, 1, ..., n-1], fused into whatever uses it (UOp.positions)."""
  return Tensor(_kept(("positions", n, device), lambda: UOp.positions(n, device)))

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

# ---- tensors, views and storages (docs/design/0005) ----
def _plain_scalar(y) -> int | float:
  """An operand that is no Tensor as a Python number (a NumPy scalar's value), or a TypeError naming its type."""
  if isinstance(y, np.generic): return y.item()
  if not isinstance(y, (int, float)): raise TypeError(f"cannot combine a Tensor with a {type(y).__name__}")
  return y

def _strip(u: UOp) -> UOp:
  while u.op is _RESHAPE: u = u.src[0]
  return u

def _owner_of(node: UOp) -> Tensor:
  t = Tensor.__new__(Tensor)
  t._base, t._storage, t.grad, t._serial = None, None, None, next(serials)
  t._own(node)
  return t

def _value(u: UOp) -> Tensor:
  """Tensor(u) for a node an op just built: a value (no storage, no base). Under no_grad() what requires grad is
  detached, as Tensor() does; the checks Tensor() makes on user data are skipped."""
  t = Tensor.__new__(Tensor)
  t._base = t._storage = t.grad = None
  t._serial = next(serials)
  if u.requires_grad and not no_grad.enabled: u = UOp(_DETACH, u.dtype, (u,))
  t._uop = u
  if u.op is _ASSIGN: pending_writes[id(t)] = t
  if u.device is not None: _hold(u, t)
  return t

def _hold(u: UOp, t: Tensor):
  """Note `t` among the tensors whose value `u` is (weakly). One holder -- most nodes have one, an eager op's result --
  is kept as its reference itself, not in a list: a list a node, made and freed, is a tenth of an eager op's cost."""
  if (held := u.holders) is None: u.holders = weakref.ref(t)
  elif type(held) is list: add_weak(held, weakref.ref(t))
  else: u.holders = [held, weakref.ref(t)]

# Constant graphs an eager op builds again and again, kept alive under a key so they are not rebuilt: Python scalars
# in a tensor's shape ((value key, its type, the tensor's dtype, device, shape) -> the result's dtype and CONST ->
# RESHAPE -> EXPAND), and graphs _kept builds under a key of its caller's: the positions graph an arange is built on
# (("positions", n, device) -> None and UOp.positions' node) and an attention's causal mask (("causal", L, S, device)). An eager loop (`x = x * 1.01 + 0.5` realized each time) drops its graph, and with it these
# nodes, every iteration: three hash-consed nodes are most of a scalar op's cost, and positions(128) is ~60 nodes,
# a third of an attention's. Keeping a node alive must not change what a schedule does with it, and the one thing a
# node's lifetime decides is whether a value a realize remembered for it (Tensor.full(...).realize(),
# schedule.remember_value) is still read from its buffer: so no graph that has, or is built on, such a value is kept,
# and realize_nodes drops a kept graph the moment one of its nodes remembers one (_drop_kept_graphs).
# Emptied when full: a bounded number of small graphs.
_kept_graphs: dict[tuple, tuple[DType | None, UOp]] = {}
_kept_keys: dict[UOp, set[tuple]] = {}  # each node of a kept graph -> the keys whose graph holds it
_KEPT_GRAPHS_MAX = 1024

def _kept_nodes(u: UOp) -> list[UOp]:
  """The nodes of a kept constant graph that a realize can remember a value for (all but the DEVICE leaves)."""
  return [n for n in u.toposort if n.op is not Ops.DEVICE]

def _keep_graph(key: tuple, dt: DType | None, u: UOp) -> tuple[DType | None, UOp]:
  """(dt, u), kept under `key` unless some node of u's graph has a remembered value."""
  nodes = _kept_nodes(u)
  if all(cached_value(n) is None for n in nodes):
    if len(_kept_graphs) >= _KEPT_GRAPHS_MAX: _kept_graphs.clear(); _kept_keys.clear()
    _kept_graphs[key] = (dt, u)
    for n in nodes: _kept_keys.setdefault(n, set()).add(key)
  return dt, u

def _scalar_key(y, tensor_dtype: DType, device: str, shape: tuple[int, ...]) -> tuple:
  """The scalar table's key for `tensor op y` (Tensor._binop inlines it). It holds the tensor's dtype and y's type, which
  decide the result's dtype, so a hit needs no promotion; 0.0 == -0.0 and NaN != NaN as dict keys, so those floats are
  keyed by their bits; the type tells 1 from 1.0 and True."""
  return (struct.pack("d", y) if isinstance(y, float) and not (y and y == y) else y, type(y), tensor_dtype, device, shape)

def _scalar_node(y, key: tuple) -> tuple[DType, UOp]:
  """The dtype of `tensor op y` and y as a constant node of it in the tensor's shape, for a miss of the table (`key`:
  _scalar_key's), kept there unless it holds a remembered value."""
  _, _, tensor_dtype, device, shape = key
  dt = result_type_scalar(tensor_dtype, y)
  return _keep_graph(key, dt, UOp.const(dt, y, device).reshape((1,) * len(shape)).expand(shape))

def _kept(key: tuple, build: Callable[[], UOp]) -> UOp:
  """The constant graph build() makes (no storage below it), kept under `key` (see _kept_graphs): the positions an
  arange is built on, an attention's causal mask."""
  if (hit := _kept_graphs.get(key)) is not None: return hit[1]
  u = build()
  assert not u.ops_below & _STATEFUL, f"{key}: only a graph of constants can be kept"
  return _keep_graph(key, None, u)[1]

def _drop_kept_graphs(remembered: UOp):
  """A realize remembers a value for `remembered`: no kept constant graph may hold it any more (see _kept_graphs)."""
  for key in _kept_keys.pop(remembered, ()):
    if (kept := _kept_graphs.pop(key, None)) is None: continue
    for n in _kept_nodes(kept[1]):
      if (keys := _kept_keys.get(n)) is not None:
        keys.discard(key)
        if not keys: del _kept_keys[n]

def _apply_steps(u: UOp, steps: tuple) -> UOp:
  for op, arg, _ in steps: u = UOp(Ops.DETACH, u.dtype, (u,)) if op is Ops.DETACH else _MOVES[op](u, arg)
  return u
_MOVES = {Ops.RESHAPE: UOp.reshape, Ops.PERMUTE: UOp.permute, Ops.EXPAND: UOp.expand, Ops.SHRINK: UOp.shrink, Ops.FLIP: UOp.flip, Ops.PAD: UOp.pad}

def _unview(steps: tuple, value: UOp, base: UOp) -> UOp:
  """The base's new value when `value` is written through a view of it: the steps undone on the value and on a mask
  of the elements the view shows; the base keeps its value elsewhere."""
  new, mask = value, UOp.const(dtypes.bool, True, value.device).reshape((1,) * len(value.shape)).expand(value.shape)
  for op, arg, shape in reversed(steps):
    if op is Ops.EXPAND and 0 in arg: return base  # a view of no elements: nothing is written
    if op is Ops.EXPAND and arg == shape: continue  # expanded to its own shape: every element is still its own
    if op is Ops.EXPAND:
      raise RuntimeError(f"cannot write into an expanded view (shape {shape} -> {arg}): several of its elements are one element of the base; "
                         "write into a contiguous() copy instead")
    if op is Ops.DETACH: continue
    if op is Ops.RESHAPE: new, mask = new.reshape(shape), mask.reshape(shape)
    elif op is Ops.PERMUTE: new, mask = new.permute(tuple(argsort(arg))), mask.permute(tuple(argsort(arg)))
    elif op is Ops.FLIP: new, mask = new.flip(arg), mask.flip(arg)
    elif op is Ops.SHRINK:
      pads = tuple((b, n - e) for (b, e), n in zip(arg, shape))
      new, mask = new.pad(pads), mask.pad(pads)
    elif op is Ops.PAD: new, mask = new.shrink(tuple((b, b + n) for (b, _), n in zip(arg, shape))), mask.shrink(tuple((b, b + n) for (b, _), n in zip(arg, shape)))
  # a where even when the view covers the base: the old value then still gets its (zero) gradient, as in PyTorch
  return mask.where(new, base)

def _leaves(root: UOp) -> dict[UOp, Tensor | None]:
  """The leaves `root` depends on along paths that carry gradients -- reads of a storage with the requires-grad flag,
  and pending writes into one -- each with its owning tensor (None if it is gone). Raises if a leaf was written in
  place after this graph read it, as PyTorch does: the gradient would be taken at values the leaf no longer has."""
  out: dict[UOp, Tensor | None] = {}
  stack, seen = [root], set()
  while stack:
    n = stack.pop()
    if n in seen or not n.requires_grad: continue
    seen.add(n)
    if n.op is Ops.BUFFER or (n.op is Ops.ASSIGN and _strip(n.src[0]).op is Ops.BUFFER and _strip(n.src[0]).arg[3]):
      b = _strip(n.src[0]) if n.op is Ops.ASSIGN else n
      buf = buffer_of(b)
      owner = buf.owner() if buf.owner is not None else None
      moved = buf.version != b.arg[2] or (n.op is Ops.BUFFER and owner is not None and owner._base is None and owner._uop.op is Ops.ASSIGN)
      if moved:
        raise RuntimeError(f"a tensor of shape {owner.shape if owner is not None else (b.arg[1],)} that requires grad was modified in place"
                           f"{' at ' + buf.wrote if buf.wrote else ''} after this graph read it, so its gradient cannot be computed "
                           "(PyTorch raises here too): compute backward() before the update, or build the graph again")
      out[n] = owner
      continue
    stack.extend(n.src)
  return out

def _current_view(view: UOp, b: UOp, buf: Buffer) -> UOp:
  """`view` (a reshape of the BUFFER node `b` of `buf`, or `b`) reading the storage's current version, without the
  requires-grad flag: `view` itself when it already does (a new output's: nothing to build)."""
  return view if b.arg[2] == buf.version and not b.arg[3] else _versioned(b, buf).reshape(view.shape)

def _versioned(b: UOp, buf: Buffer, requires_grad: bool = False) -> UOp:
  """The BUFFER node `b` of `buf` read at the storage's current version, holding `buf` itself: a graph built on it reads
  this storage after every tensor that owned it is gone (found by uid alone, a dead storage's would be a new, empty one)."""
  n = b.at_version(buf.version, requires_grad)
  if n.__dict__.get("buffer") is not buf: register_buffer(n, buf)
  return n

def _held_by(n: UOp) -> list[Tensor]:
  refs = h if type(h := n.holders) is list else () if h is None else (h,)  # see _hold
  return [t for t in live(refs) if t._base is None and t._uop is n]

def _destroyed_values(storages: list[Buffer], writes: set[UOp], made_in: tuple[int, int] | None = None) -> list[UOp]:
  """Values held by live tensors that read the current contents of `storages` (directly, or through a node cached
  there), found by walking up the child links from those contents; a value cached in another storage, and a write
  being executed (whose readers read the new contents), end the walk. The storages' owners are not counted (a write
  is meant to change them), nor, with `made_in`, tensors whose serial is in that range (a JIT capture's own)."""
  stack = [n for b in storages for n in live(b.reads) if n.arg[2] == b.version] + [n for b in storages for n in live(b.cached)]
  stack.reverse()  # popped in the storages' order
  found, seen, written = [], set(), {id(b) for b in storages}
  while stack:
    n = stack.pop()
    if n in seen or n in writes: continue
    seen.add(n)
    if (c := cached_value(n)) is not None and id(buffer_of(_strip(c))) not in written: continue
    if any(id(t._storage) not in written and not (made_in and made_in[0] <= t._serial < made_in[1]) for t in _held_by(n)): found.append(n)
    stack.extend(live(n.children))
  return found

def _viz_annotate(**info):
  from lucidgrad import viz
  viz.annotate(**info)

def _viz_cache_hit(template):
  """A schedule-cache hit in the recording (VIZ): the realize group says so, and lists its kernels with their reasons."""
  from lucidgrad import viz
  viz.annotate(schedule="schedule cache hit", items=len(template.items))
  viz.cached_kernels(template.runners, template.reasons, lambda d: Device[d].renderer.has_local)

def _print_reasons(runners: list, reasons):
  """DEBUG=3: one line per item, its kernel's (or copy's) name and why its output has a buffer (docs/design/0030)."""
  for r, why in zip(runners, reasons): print(f"  {getattr(r, 'name', type(r).__name__)}: {why}")

def realize_nodes(nodes: list[UOp]) -> dict[UOp, UOp]:
  """Compute `nodes` (and the values their in-place writes would destroy) in one schedule; remember every computed value
  by node, bump the version of every storage written, and move each written storage's owner to its new version.
  Returns node -> a view of the storage holding it. A graph equal to one scheduled before up to which storages it reads
  reuses that schedule (docs/design/0009-schedule-cache.md). With VIZ, all of it is recorded as a realize group."""
  if not VIZ.value: return _realize_nodes(nodes)
  from lucidgrad import viz
  n = sum(g["kind"] == "realize" for g in viz.record.rec.groups) + 1
  with viz.group("realize", f"realize {n}: {len(nodes)} targets", targets=[f"{u.shape} {u.dtype.name}" for u in nodes]):
    return _realize_nodes(nodes)

def _realize_nodes(nodes: list[UOp]) -> dict[UOp, UOp]:
  if _pending_checks or len(nodes) > 1: nodes = list(dict.fromkeys(nodes + take_index_checks() if _pending_checks else nodes))
  walk, user_targets = schedule_walk(nodes), len(nodes)  # past these, values a write would destroy (their realize reason)
  while (writes := walk.writes):
    # in the graph's order and the walk's (child links are in creation order): schedules are the same run to run
    more = [n for n in _destroyed_values(list(dict.fromkeys(buffer_of(_strip(w.src[0])) for w in writes)), set(writes)) if n not in nodes]
    if not more: break
    if DEBUG >= 2: print(f"realize: {len(more)} value(s) read what an in-place write overwrites: computed first")
    try: walk = schedule_walk(nodes + more)  # one that is only a read of the overwritten contents is copied out (create_schedule)
    except BindingConflict:  # values computed under another binding of a Variable: their own schedule, first (docs/design/0029)
      realize_nodes(more)
      walk = schedule_walk(nodes)
      continue
    nodes = nodes + more  # a new list: `nodes` may be the caller's
  if walk.binds: ops_module.bound_values.update(walk.binds)  # the values its kernels launch with (docs/design/0029)
  if (template := templates.get(walk.key)) is None:  # cached_template(walk.key), its frame spared
    items, becomes, written, new = _create_schedule(nodes, user_targets)
    GlobalCounters.schedules_built += 1
    lowered = lower_schedule(items)
    if VIZ.value: _viz_annotate(schedule="built", items=len(items))
    if DEBUG >= 3: _print_reasons([ei.runner for ei in lowered], [it.reason for it in items])
    if (template := make_template(walk, items, becomes, written, new)) is None:
      if DEBUG >= 3: print("schedule cache: this schedule is not kept (it names something outside its graph)")
      run_items(lowered)
    else:
      template.runners = [ei.runner for ei in lowered]
      keep_template(walk.key, template)
      if DEBUG >= 3: print(f"schedule cache: miss, kept a template of {len(items)} items over {len(walk.nodes)} nodes")
  else:
    if DEBUG.value >= 3:
      print(f"schedule cache: hit, {len(template.items)} items")
      _print_reasons(template.runners, template.reasons)
    if VIZ.value: _viz_cache_hit(template)
  if template is not None:
    bufs, becomes, written = template.bind(walk)
    run_bound(template, bufs)
    if template.plain:
      # nothing written in place, and every value went into a storage this run made, read at its first version: what
      # the loop below asks per entry is known (docs/design/0032)
      for (old, view), (_, r, _) in zip(becomes.items(), template.becomes):
        if ops_module.variables_made and old.shape is not None and shape_is_symbolic(old.shape): continue  # read once (numpy)
        if old in _kept_keys: _drop_kept_graphs(old)
        if not old.ops_below & _STATEFUL: remember_value(old, view, bufs[r])  # a constant graph's: counted there
        else:  # remember_value, inline (every eager op's value)
          old.stored = view
          (cached := bufs[r].cached).append(weakref.ref(old))
          if (n := len(cached)) >= 16 and n & (n - 1) == 0: cached[:] = [c for c in cached if c() is not None]
      return becomes
  where = user_line() if written else ""
  for b in written:
    b.version, b.wrote, b.cached = b.version + 1, where, []
    b.__dict__.pop("panels", None)  # copies of the old contents (_weight_panels): their memory goes now
  executed = set(writes)
  for old, view in becomes.items():
    b = _strip(view)
    buf = buffer_of(b)
    if is_buffer_view(old) and buffer_of(_strip(old)) is buf: continue  # a read of a storage needs no entry
    if ops_module.variables_made and old.shape is not None and shape_is_symbolic(old.shape): continue  # its max-form value is read once (numpy)
    # a value read from a storage this schedule overwrote is gone; only the write that overwrote it is its new contents
    if buf not in written or _strip(old) in executed:
      if old in _kept_keys: _drop_kept_graphs(old)
      remember_value(old, _current_view(view, b, buf), buf)
  for buf in written:
    if buf.owner is not None and (t := buf.owner()) is not None and t._base is None and t._uop.op is Ops.ASSIGN and t._uop in becomes:
      leaf = _strip(t._uop.src[0]).arg[3]
      if leaf or not t._uop.requires_grad: t._set(t._current(leaf))  # a write with history keeps it (its value is cached)
  return becomes

# ---- errors only the device can see: out-of-range indices (checked at the next host read) ----
def _host_read(what: str):
  from lucidgrad.engine.jit import active, JitError
  if active: raise JitError(f"{what} inside a jitted function (at {user_line()}): a replay cannot run Python code, so the value it "
                               "read would be frozen at the capture; return the tensor from the function and read it outside")

# An index op built on a tensor index adds a check: a bad index encoded, ((MAX-site) << 42) | (|i| << 1) | (i < 0), 0 if
# none (the largest index if it is past the end, else the least if it is below the start). The next realize folds every
# pending check into one max written in place into its device's error scalar (so JIT replays, which rerun that kernel,
# accumulate into it too); every host read looks at the scalars, and a nonzero one raises IndexError naming the op,
# the index, the size and the user's line. CHECK_INDEX=0 turns it off.
# An index whose values already sit in host memory (a realized tensor on the CPU: indices from a data loader, a token
# batch) is checked there when the op is built -- two NumPy reductions instead of ~16 nodes built and a kernel per
# realize, which cost an embedding lookup more than the lookup itself -- and its code waits in `_host_error` for the same
# next host read. Not while a JIT captures: a replay reruns kernels, not this Python, so only the device check sees
# the indices of later calls.
_check_sites: dict[tuple, int] = {}           # (what, size, line) -> site id
_site_info: list[tuple] = []                  # site id -> (what, size, line)
_pending_checks: dict[str, list[UOp]] = {}    # device -> encoded checks not yet run
_errors: dict[str, Tensor] = {}               # device -> its error scalar (int64, 0 = no error)
_host_error = 0                               # the worst code of the checks made on the host since the last read
_MAG_BITS, _MAX_SITES = 41, (1 << 21) - 1

def check_index(idx: Tensor, lo: int, hi: int, what: str, ignore: int | None = None):
  """Check on the device, by the next host read, that lo <= idx < hi (or idx == ignore); `what` names the op and the axis."""
  if not CHECK_INDEX.value or (u := idx._uop if idx._base is None else idx.uop).device.startswith("NULL") or 0 in u.shape: return
  if not capturing and (extremes := _host_extremes(idx, ignore)) is not None:
    # checked here and now: the site (the user's line: a walk up the stack) is only needed to report a bad index
    if extremes and (extremes[0] > hi - 1 or extremes[1] < lo):
      global _host_error
      _host_error = max(_host_error, _bad_index_code(_site(what, hi), *extremes, lo, hi))
    return
  # a graph of constants whose bounds are in range (an arange's positions: a positional embedding's index) needs no
  # check; its bounds are conservative, and a constant graph is shallow enough to ask them of
  if not u.ops_below & _STATEFUL and lo <= u.vmin and u.vmax < hi: return
  site = _site(what, hi)
  # built from UOps directly, no broadcasting or promotion to go through (this runs for every indexed op): the largest
  # and the least index, each one reduce; then the encoding on those two scalars (0-d constants are one node each)
  i = idx.uop.cast(dtypes.int64)
  if ignore is not None: i = i.alu(Ops.CMPNE, i.const_like(ignore)).where(i, i.const_like(lo))
  axes = tuple(range(len(i.shape)))
  most = i.reduce_axis(Ops.MAX, axes).reshape(()) if axes else i
  least = i.alu(Ops.NEG).reduce_axis(Ops.MAX, axes).reshape(()).alu(Ops.NEG) if axes else i
  c = most.const_like
  over = c(hi - 1).alu(Ops.CMPLT, most)
  v = over.where(most, least)  # a bad index if there is one: past the end if any is, else the least
  bad = over.alu(Ops.OR, least.alu(Ops.CMPLT, c(lo)))
  neg = v.alu(Ops.CMPLT, c(0))
  mag = neg.where(v.alu(Ops.NEG), v)
  mag = mag.alu(Ops.CMPLT, c((1 << _MAG_BITS) - 1)).where(mag, c((1 << _MAG_BITS) - 1))
  # the site counts down in the top bits, so of several bad indices the max reports the op built first
  code = c((_MAX_SITES - site) << (_MAG_BITS + 1)).alu(Ops.ADD, mag.alu(Ops.MUL, c(2))).alu(Ops.ADD, neg.cast(dtypes.int64))
  enc = bad.where(code, c(0))
  _pending_checks.setdefault(idx.device, []).append(enc)

def _site(what: str, hi: int) -> int:
  """The site id of an index check at the user's line (ids in the order sites are first checked on the device or
  first found bad on the host: the smaller id is the one reported)."""
  key = (what, hi, user_line())  # lo is 0, or -hi where negative indices count from the end
  if (site := _check_sites.get(key)) is None and len(_site_info) < _MAX_SITES:
    site = _check_sites[key] = len(_site_info)
    _site_info.append(key)
  return _MAX_SITES - 1 if site is None else site  # so many distinct sites that the last one stands for the rest

def _value_of(u: UOp) -> UOp | None:
  """A current buffer view holding `u`'s value, or None if it has to be computed."""
  return u if is_buffer_view(u) and u.base.arg[2] != -1 and is_current(u) else cached_value(u)

_SAME_VALUES = frozenset({Ops.RESHAPE, Ops.EXPAND, Ops.PERMUTE})  # views that repeat or reorder values, never add or drop one

def _host_extremes(idx: Tensor, ignore: int | None) -> tuple[int, int] | tuple[()] | None:
  """(largest, least) of every value the index holds (repeats and order aside; `ignore` left out), () if it holds
  none, read in place where they are computed into memory of our own the host can read; else None. Memory handed in
  from outside (`from_bytes`) can change without a write we see between the op's build and its realize, so its
  indices are checked on the device, when the gather reads them. Kept on the storage per version and `ignore`: a
  realized index looked up again (an embedding's tokens, a loop's batch) is read once."""
  u = idx._uop if idx._base is None else idx.uop
  while u.op in _SAME_VALUES: u = u.src[0]
  # _value_of(u), its common case (a realized index: a current read of its storage) without its four calls
  if u.op is _BUFFER and u.arg[2] != -1 and (buf := u.__dict__.get("buffer") or buffer_of(u)).version == u.arg[2]: pass
  elif (view := cached_value(u)) is None: return None
  else: buf = buffer_of(_strip(view))
  if not buf._owned: return None  # handed in, or shared out (DLPack): written where no version counts it
  if (memo := buf.__dict__.get("extremes")) is not None and memo[0] == buf.version and memo[1] == ignore: return memo[2]
  if (mem := buf.allocator.host_view(buf.raw)) is None: return None
  values = np.frombuffer(mem, dtype=buf.dtype.np, count=buf.size)
  if ignore is not None: values = values[values != ignore]
  got = (int(values.max()), int(values.min())) if values.size else ()
  buf.extremes = (buf.version, ignore, got)
  return got

def _bad_index_code(site: int, most: int, least: int, lo: int, hi: int) -> int:
  """The device check's encoding (check_index), computed on the host from the largest and the least index."""
  if most > hi - 1: v = most
  elif least < lo: v = least
  else: return 0
  return ((_MAX_SITES - site) << (_MAG_BITS + 1)) + min(abs(v), (1 << _MAG_BITS) - 1) * 2 + (v < 0)

def take_index_checks() -> list[UOp]:
  """The in-place writes that fold the pending checks into each device's error scalar: one small kernel per device."""
  out = []
  for dev in list(_pending_checks):
    if not (checks := _pending_checks.pop(dev, None)): continue
    if (err := _errors.get(dev)) is None: err = _errors[dev] = Tensor.zeros((), dtype=dtypes.int64, device=dev).contiguous().realize()
    worst = err.uop
    for c in checks: worst = worst.alu(Ops.MAX, c)
    out.append(err.assign(Tensor(worst)).uop)
  return out

def check_device_errors():
  """Raise the IndexError the checks recorded since the last host read (and clear them): of several, the one of the op
  built first, wherever it was checked. Checks not run yet run now."""
  global _host_error
  if _pending_checks: realize_nodes([])
  code, _host_error = _host_error, 0
  for err in _errors.values():
    if err._uop.op is Ops.ASSIGN or not (found := int(buffer_of(_strip(err._uop)).numpy()[0])): continue
    err.assign(0).realize()
    code = max(code, found)
  if not code: return
  what, size, line = _site_info[_MAX_SITES - (code >> (_MAG_BITS + 1))]
  value = ((code >> 1) & ((1 << _MAG_BITS) - 1)) * (-1 if code & 1 else 1)
  raise IndexError(f"{what}: index {value} is out of range for size {size} (the op was built at {line}; indices are checked "
                   "when the op is built or on the device, and reported at the next read of a value; CHECK_INDEX=0 turns the check off)")
