"""Tensor methods for indexing and reshaping data: advanced indexing, assignment into slices, gather/scatter,
cat/stack/split and friends, padding modes and interpolation. A mixin of `Tensor`; it uses only the Tensor API.
Gather-like ops (integer-tensor indexing, gather, take_along_dim, index_select) are one GATHER node each: every output
element loads its index and then the one element it names (docs/design/0014). scatter_add, scatter_reduce sum/mean and
`t[idx] = v` are one SCATTER each: a copy of the base, then one add (or store) per source element at the position its
index holds (docs/design/0017), as is scatter (a store per source element: the last wins); scatter_reduce
prod/amax/amin compare the index against an arange along the axis and take a masked reduce."""
from __future__ import annotations
import itertools, math
from typing import TYPE_CHECKING
import numpy as np
from lucidgrad.dtype import dtypes, DType, promote_types, min_max
from lucidgrad.helpers import prod
from lucidgrad.uop.ops import UOp, Ops, broadcast_shape
import lucidgrad.tensor as lt  # tensor.py imports this module before it defines Tensor: its names are read at call time
if TYPE_CHECKING: from lucidgrad.tensor import Tensor

def _ints(args: tuple) -> tuple:
  """Shape-like varargs: f(2, 3) and f((2, 3)) alike."""
  return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)

def _tensors_and_dim(first, others: tuple, dim: int) -> tuple[list, int]:
  """The tensors of a.cat(b, c), Tensor.cat([a, b, c]) or Tensor.cat([a, b, c], dim), and the dim."""
  if not isinstance(first, (list, tuple)): return [first, *others], dim
  if len(others) == 1 and isinstance(others[0], (int, np.integer)): return list(first), int(others[0])
  return [*first, *others], dim

def _pick(x: Tensor, hit: Tensor, axis: int = -1) -> Tensor:
  """The one element of x along `axis` where `hit` is True (0 where none is): a masked sum, so the gradient flows to it only."""
  if x.dtype == dtypes.bool: return _extreme(hit.where(x, False), "max", axis, False)  # an empty axis has no max: it picks False
  return hit.where(x, 0).sum(axis, dtype=x.dtype)

def _extreme(t: Tensor, op: str, axis: int, empty) -> Tensor:
  """t.max or t.min over axis, `empty` where the axis has no elements (as an empty index gives)."""
  axis %= t.ndim
  if t.shape[axis] == 0: t = t.pad(tuple((0, 1) if k == axis else (0, 0) for k in range(t.ndim)), value=empty)
  return getattr(t, op)(axis=axis)

def _can_cast(frm: DType, to: DType) -> bool:
  """torch.can_cast: no conversion from float to int or bool, or from int to bool (those would lose values)."""
  rank = lambda dt: 0 if dt == dtypes.bool else 1 if dt.is_int() else 2
  return rank(frm) <= rank(to)

def _check_index_dtype(index: Tensor, op: str):
  if index.dtype.is_float(): raise TypeError(f"{op}: gathering with a float index ({index.dtype}); indices must be an integer tensor")
  if index.dtype == dtypes.bool: raise TypeError(f"{op}: the index is a bool tensor; indices must be an integer tensor")

def _wide_index(index: Tensor) -> Tensor:
  """An index of at least 32 bits, so adding the size to a negative index, or the arange it is compared with, cannot wrap."""
  return index if index.dtype.itemsize >= 4 else index.cast(dtypes.int32)

def _check_const_index(arr: np.ndarray, n: int, dim: int, shape: tuple):
  """A constant index is checked now: it names the first index out of range, as an int index does."""
  bad = arr[(arr < -n) | (arr >= n)]
  if bad.size: raise IndexError(f"index {int(bad.flat[0])} is out of range for dimension {dim} of size {n} (shape {shape})")

def _read_ints(what: str, *ts: Tensor) -> list[int]:
  """The values of the 0-d tensors ts, which an output's shape depends on, read on the host: a sync, as torch's on a
  GPU. Refused inside a jitted function: its replay runs kernels, not this Python, so the shape would be frozen."""
  lt._host_read(what)
  ts[0].realize(*ts[1:])
  return [int(t.item()) for t in ts]

def _true_positions(m: Tensor, what: str) -> Tensor:
  """The positions (int64) of the True entries of the 1-D bool m, in order. Their count is read on the host (a sync);
  then each True entry's position is stored at its rank among them (a running sum of m: O(64 n) work, tensor_math's
  blocked scan) by one scatter, O(n)."""
  n = m.shape[0]
  lt._host_read(what)  # refused in a jit whatever the size, so a capture never depends on it
  if n == 0: return lt.Tensor.zeros(0, dtype=dtypes.int64, device=m.device)
  rank = m.cumsum(0, dtype=dtypes.int64).realize()
  count = _read_ints(what, rank[-1])[0]
  # into n + 1 slots, the False entries to the last: kernels of the input's size, which a new count does not recompile
  dest = m.where(rank - 1, n)
  return lt.Tensor.zeros(n + 1, dtype=dtypes.int64, device=m.device)._scatter(0, dest, lt.Tensor.arange(n, dtype=dtypes.int64, device=m.device), None)[:count]

def _search(seq: Tensor, values: Tensor, right: bool) -> Tensor:
  """For each value, how many entries of the sorted last axis of seq come before it: those < v (<= v if right), where
  NaN never compares, so a NaN value lands past the end, as torch's. seq is 1-D (values any shape) or has the values'
  leading axes. A binary search: bit_length(N) steps of one gather per value, O(values x log N); int64 results."""
  N = seq.shape[-1]
  ax, flat = seq.ndim - 1, seq.ndim == 1
  v = values.reshape(-1) if flat else values
  lo = lt.Tensor.zeros(v.shape, dtype=dtypes.int32, device=seq.device)
  hi = lt.Tensor.full(v.shape, N, dtype=dtypes.int32, device=seq.device)
  for _ in range(N.bit_length()):  # each step leaves at most half of [lo, hi): after bit_length(N) none is left
    live, mid = lo < hi, (lo + hi) >> 1
    at = seq._gather(ax, mid.minimum(N - 1))
    before = ((at > v) if right else (at > v) | (at == v)).logical_not()  # not "at >= v": a NaN value goes right
    lo, hi = (live & before).where(mid + 1, lo), (live & before.logical_not()).where(mid, hi)
  return lo.cast(dtypes.int64).reshape(values.shape)

def _embed_diagonal(x: Tensor, offset: int) -> Tensor:
  """(..., n) -> (..., n + |offset|, n + |offset|) with x on the offset diagonal of the last two axes, zeros elsewhere.
  Movement ops only: a column of zeros after each element, read back in rows of n, puts x[i] at (i, i)."""
  lead, n = x.shape[:-1], x.shape[-1]
  z = ((0, 0),) * len(lead)
  sq = x.unsqueeze(-1).pad(z + ((0, 0), (0, n))).reshape(*lead, n * (n + 1)).shrink(tuple((0, s) for s in lead) + ((0, n * n),)).reshape(*lead, n, n)
  k = abs(offset)
  return sq.pad(z + (((0, k), (k, 0)) if offset >= 0 else ((k, 0), (0, k)))) if k else sq

def _take_diagonal(x: Tensor, offset: int) -> Tensor:
  """The offset diagonal of the last two axes of x as its last axis: the square it lies on, read in rows of one more
  than its side (movement ops only)."""
  lead, (r, c) = x.shape[:-2], x.shape[-2:]
  L = max(0, min(r, c - offset) if offset >= 0 else min(r + offset, c))
  keep = tuple((0, s) for s in lead)
  rows, cols = ((0, L), (offset, offset + L)) if offset >= 0 else ((-offset, -offset + L), (0, L))
  if L == 0: return x.shrink(keep + ((0, 0), (0, 0))).reshape(*lead, 0)
  sq = x.shrink(keep + (rows, cols)).reshape(*lead, L * L).pad(((0, 0),) * len(lead) + ((0, L),)).reshape(*lead, L, L + 1)
  return sq.shrink(keep + ((0, L), (0, 1))).reshape(*lead, L)

def _tri_indices(row: int, col: int, offset: int, dtype, device, lower: bool) -> Tensor:
  for name, v in (("row", row), ("col", col), ("offset", offset)):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool): raise TypeError(f"{'tril' if lower else 'triu'}_indices: {name} must be an int, got {v!r}")
  if row < 0 or col < 0: raise ValueError(f"{'tril' if lower else 'triu'}_indices: row and col must be >= 0, got row={row}, col={col}")
  dt = lt._to_dtype(dtype)
  if not dt.is_int(): raise TypeError(f"{'tril' if lower else 'triu'}_indices: dtype must be an integer dtype, got {dt}")
  i, j = (np.tril_indices if lower else np.triu_indices)(row, offset, col)
  return lt.Tensor(np.stack([i, j]).astype(dt.np).reshape(2, -1), dtype=dt, device=device)

CAT_PIECES = 64  # pieces one cat joins in one kernel (64: ~0.7 s of gcc)

class ShapeMixin:
  # ---- indexing ----
  def __getitem__(self, idx) -> Tensor:
    """NumPy/PyTorch indexing: ints, slices (any step), None, Ellipsis, and integer tensors or lists (advanced indexing).
    A slice may be bounded by Variables (`x[:, pos:pos+1]`, `x[:, :v]`: step 1, docs/design/0029)."""
    if (sym := self._symbolic_slices(idx)) is not None: return sym[0] if sym[1] is None else sym[0][sym[1]]
    basic, adv = self._parse_index(idx)
    x = self._basic_index(basic)
    return x._advanced_index(adv) if adv else x

  def _symbolic_pad(self, pairs: list, mode: str, value: float) -> Tensor:
    """A constant pad whose amounts (or whose tensor's sizes) are expressions of Variables; every amount must be at
    least 0 for every value its Variables can take (docs/design/0029)."""
    from lucidgrad.uop.ops import sym_str
    if mode != "constant": raise ValueError(f"pad: mode {mode!r} with symbolic sizes is not supported (only 'constant')")
    for p in pairs:
      for x in p:
        if (x.vmin if isinstance(x, UOp) else x) < 0: raise ValueError(f"pad: the amount {sym_str(x)} can be negative; symbolic pads must be at least 0")
    grow = tuple((b if isinstance(b, UOp) else int(b), a if isinstance(a, UOp) else int(a)) for b, a in pairs)
    padded = lt.Tensor(self.uop.pad(grow))
    if value == 0: return padded
    inside = UOp.const(dtypes.bool, True, self.device).reshape((1,) * self.ndim).expand(self.shape).pad(grow)
    return lt.Tensor(inside).where(padded, self._const(value))

  def _symbolic_slices(self, idx):
    """For an index with slices bounded by Variables: (this tensor shrunk along those axes -- a view --, the rest of the
    index with those slices made whole, or None if nothing is left to do); None for any other index."""
    items = idx if isinstance(idx, tuple) else (idx,)
    symbolic = lambda i: isinstance(i, slice) and (isinstance(i.start, UOp) or isinstance(i.stop, UOp))
    if not any(symbolic(i) for i in items): return None
    if any(i is None or not isinstance(i, (slice, int, type(Ellipsis))) for i in items):
      raise IndexError(f"an index with Variable bounds takes slices, ints and Ellipsis only, got {idx!r}")
    ell = [k for k, i in enumerate(items) if i is Ellipsis]
    if len(ell) > 1: raise IndexError("an index can have only one Ellipsis")
    before = ell[0] if ell else len(items)
    if len(items) - len(ell) > self.ndim: raise IndexError(f"too many indices for a tensor of shape {self.shape}")
    arg: list = [None] * self.ndim
    for k, i in enumerate(items):
      if not symbolic(i): continue
      if i.step not in (None, 1): raise IndexError(f"a slice bounded by Variables takes step 1, got step {i.step}")
      a = k if k < before else self.ndim - (len(items) - k)
      arg[a] = (0 if i.start is None else i.start, self.shape[a] if i.stop is None else i.stop)
    x = self.shrink(tuple(arg))
    rest = tuple(slice(None) if symbolic(i) else i for i in items)
    return x, None if all(i == slice(None) or i is Ellipsis for i in rest) else rest

  def _parse_index(self, idx) -> tuple[tuple, list]:
    """(basic index, one entry per axis; [(axis of the basic view, int index tensor with negatives wrapped)]). Lists, arrays
    and tensors stand as full slices in the basic index; a constant bool mask becomes the indices of its True entries."""
    T = lt.Tensor
    items: list = []
    for i in (idx if isinstance(idx, tuple) else (idx,)):
      if isinstance(i, (list, np.ndarray)):
        a = np.asarray(i)
        if a.size == 0 and a.dtype.kind == "f": a = a.astype(np.int64)  # [] is an empty index, not a float one
        if a.dtype == np.bool_ and a.ndim: items.extend(np.nonzero(a))
        elif a.dtype.kind in "iu": items.append(a.astype(np.int64))
        elif a.dtype.kind == "f": raise TypeError(f"indexing with {i!r}: gathering with a float index; indices must be integers")
        else: raise TypeError(f"bad index {i!r}")
      elif isinstance(i, T):
        if i.dtype == dtypes.bool:
          raise TypeError(f"indexing with a bool tensor of shape {i.shape} gives a shape that depends on its values; use masked_fill or where "
                          "(or index with mask.numpy())")
        _check_index_dtype(i, "indexing")
        items.append(_wide_index(i))
      elif i is None or i is Ellipsis or isinstance(i, (slice, int, np.integer)) and not isinstance(i, bool): items.append(i)
      else: raise TypeError(f"bad index {i!r}")
    if sum(1 for i in items if i is Ellipsis) > 1: raise IndexError("an index can only have a single ellipsis")
    n_real = sum(1 for i in items if i is not None and i is not Ellipsis)
    if n_real > self.ndim: raise IndexError(f"too many indices ({n_real}) for a tensor of shape {self.shape}")
    e = next((k for k, i in enumerate(items) if i is Ellipsis), len(items))
    items = items[:e] + [slice(None)] * (self.ndim - n_real) + items[e+1:]
    basic, adv, dim, vdim = [], [], 0, 0
    for i in items:
      if i is None: basic.append(None); vdim += 1; continue
      n = self.shape[dim]
      if isinstance(i, (np.ndarray, T)):
        if isinstance(i, np.ndarray):
          _check_const_index(i, n, dim, self.shape)
          i = T(np.where(i < 0, i + n, i).astype(np.int32 if n < 2**31 else np.int64), device=self.device)
        else:
          if i.device != self.device: raise RuntimeError(f"the index is on {i.device}, the tensor on {self.device}; move one with .to()")
          lt.check_index(i, -n, n, f"indexing dimension {dim}")
          i = (i < 0).where(i + n, i)
        adv.append((vdim, i))
        i = slice(None)
      basic.append(i)
      dim += 1
      if isinstance(i, slice): vdim += 1
    return tuple(basic), adv

  def _basic_index(self, idx: tuple) -> Tensor:
    """The view for a basic index (one entry per axis, plus Nones): a view of this tensor, as in PyTorch and NumPy, so
    it sees later writes to this tensor and writes through it reach this tensor."""
    shrink, flips, strides, out_shape, dim = [], [], [], [], 0
    for i in idx:
      if i is None: out_shape.append(1); continue
      n = self.shape[dim]
      if isinstance(i, slice):
        start, stop, step = i.indices(n)
        cnt = max(0, math.ceil((stop - start) / step))
        lo = start if step > 0 else start + step * (cnt - 1) if cnt else 0
        shrink.append((lo, lo + (cnt - 1) * abs(step) + 1 if cnt else lo)); strides.append(abs(step)); out_shape.append(cnt)
        if step < 0: flips.append(dim)
      else:
        if not -n <= i < n: raise IndexError(f"index {i} is out of range for dimension {dim} of size {n} (shape {self.shape})")
        i = int(i) % n
        shrink.append((i, i + 1)); strides.append(1)
      dim += 1
    x = self._view(Ops.SHRINK, tuple(shrink))
    if flips: x = x._view(Ops.FLIP, tuple(flips))
    if any(s != 1 for s in strides):  # a step: pad each axis to a multiple of it, split it off, keep the first
      x = x._view(Ops.PAD, tuple((0, (-sh) % st) for sh, st in zip(x.shape, strides)))
      x = x._view(Ops.RESHAPE, tuple(v for sh, st in zip(x.shape, strides) for v in (sh // st, st)))
      x = x._view(Ops.SHRINK, tuple(p for sh, st in zip(x.shape[::2], strides) for p in ((0, sh), (0, 1))))
    return x._view(Ops.RESHAPE, tuple(out_shape))

  def _advanced_layout(self, adv: list) -> tuple[list, tuple, tuple, Tensor, int]:
    """(the other axes, the broadcast index shape B, the indexed sizes, the flat index into them, where B goes in the result).
    As in PyTorch, B takes the place of the indexed axes if they are adjacent (0-d indices count as ints), else goes first."""
    dims = [d for d, _ in adv]
    if len(set(dims)) != len(dims): raise IndexError("an axis is indexed twice")
    B = broadcast_shape(*(t.shape for _, t in adv))
    sizes = tuple(self.shape[d] for d in dims)
    lin = None
    for (d, t), stride in zip(adv, [prod(sizes[k+1:]) for k in range(len(sizes))]):
      term = t._broadcast_to(B) * stride if stride != 1 else t._broadcast_to(B)
      lin = term if lin is None else lin + term
    rest = [d for d in range(self.ndim) if d not in dims]
    kept = [d for d in range(self.ndim) if d in rest or any(d == a and t.ndim for a, t in adv)]
    multi = [kept.index(d) for d, t in adv if t.ndim]
    adjacent = multi == list(range(multi[0], multi[0] + len(multi))) if multi else True
    p = sum(1 for d in rest if multi and d < kept[multi[0]]) if adjacent else 0
    return rest, B, sizes, lin, p

  def _advanced_flat(self, adv: list) -> tuple[Tensor, Tensor, list, tuple, tuple, int]:
    """(this tensor with the indexed axes moved together to position p -- where the index's shape B goes in the result --
    and flattened into one; the flat index along that axis, broadcast over the others; the axis order; the other axes'
    sizes R; B; p). Axes indexed side by side stay where they are: no permute, so a scatter into it (the gradient,
    `t[idx] = v`) writes this tensor's own layout (an embedding's rows whole)."""
    rest, B, sizes, lin, p = self._advanced_layout(adv)
    R, nb = tuple(self.shape[d] for d in rest), prod(B)
    order = rest[:p] + [d for d, _ in adv] + rest[p:]
    table = (self.permute(order) if order != list(range(self.ndim)) else self).reshape(R[:p] + (prod(sizes),) + R[p:])
    index = lin.reshape((1,) * p + (nb,) + (1,) * (len(R) - p)).expand(R[:p] + (nb,) + R[p:])
    return table, index, order, R, B, p

  def _advanced_index(self, adv: list) -> Tensor:
    """The elements the advanced indices point at: one gather along the flattened indexed axes."""
    table, index, _, R, B, p = self._advanced_flat(adv)
    return table._gather(p, index).reshape(R[:p] + B + R[p:])

  def __setitem__(self, idx, value):
    """t[idx] = value, in place as in PyTorch: t (its storage, or its base for a view) takes `value` where idx points,
    and views of t see it. With repeated indices the last one wins. On a leaf that requires grad only under no_grad()."""
    if lt.no_grad.enabled and self._leaf_that_requires_grad():
      raise RuntimeError("assignment into a leaf tensor that requires grad (or a view of one) outside no_grad(): the gradient would not see "
                         "the change (PyTorch forbids it too); write it inside `with no_grad():`, or use assign()")
    if isinstance(idx, lt.Tensor) and idx.dtype == dtypes.bool:
      if idx.shape != self.shape[:idx.ndim]: raise IndexError(f"a mask of shape {idx.shape} does not match the tensor's shape {self.shape}")
      v = self._value_for(value, "setitem")
      if v.numel() != 1: raise ValueError(f"t[mask] = value needs one value (the count of True entries is known only when it runs), got shape {v.shape}")
      self.assign(self.masked_fill(idx.reshape(idx.shape + (1,) * (self.ndim - idx.ndim)), v.reshape(())))
      return
    if (sym := self._symbolic_slices(idx)) is not None:
      if sym[1] is not None: sym[0][sym[1]] = value
      else: sym[0].assign(self._value_for(value, "setitem")._broadcast_checked(sym[0].shape, "setitem", self.shape))
      return
    basic, adv = self._parse_index(idx)
    x = self._basic_index(basic)
    v = self._value_for(value, "setitem")
    x.assign(x._advanced_put(adv, v) if adv else v._broadcast_checked(x.shape, "setitem", self.shape))

  def _advanced_put(self, adv: list, v: Tensor) -> Tensor:
    """self with v written where the advanced index points, one store per element of the index in order (a SCATTER):
    of repeated indices the last one in the index's row-major order wins."""
    table, index, order, R, B, p = self._advanced_flat(adv)
    v = v._broadcast_checked(R[:p] + B + R[p:], "setitem", self.shape).reshape(index.shape)
    out = table._scatter(p, index, v, None).reshape(R[:p] + tuple(self.shape[d] for d, _ in adv) + R[p:])
    return out.permute([order.index(d) for d in range(self.ndim)]) if order != list(range(self.ndim)) else out

  def _value_for(self, value, op: str) -> Tensor:
    """`value` as a tensor of this dtype and device: a tensor must be on this device and of a dtype this one holds."""
    T = lt.Tensor
    if isinstance(value, T):
      if value.device != self.device: raise RuntimeError(f"{op}: the value is on {value.device}, the tensor on {self.device}; move one with .to()")
      if not _can_cast(value.dtype, self.dtype):
        raise TypeError(f"{op}: {value.dtype.name} values do not fit a tensor of {self.dtype.name} without loss; cast them with .cast(dtypes.{self.dtype.name}) first")
      return value.cast(self.dtype)
    if isinstance(value, (list, tuple, np.ndarray)): return T(np.asarray(value), dtype=self.dtype, device=self.device)
    if isinstance(value, (bool, int, float, np.generic)): return self._const(value.item() if isinstance(value, np.generic) else value)
    raise TypeError(f"{op}: cannot assign a {type(value).__name__}")

  def _broadcast_checked(self, shape: tuple, op: str, target: tuple) -> Tensor:
    try: return self._broadcast_to(shape)
    except ValueError: raise ValueError(f"{op}: a value of shape {self.shape} cannot be broadcast to the indexed shape {shape} (tensor shape {target})") from None

  def assign(self, x) -> Tensor:
    """Replace this tensor's values with x (broadcast to its shape, of a dtype it can hold, on its device); returns self.
    A tensor that owns a storage is written in place when it is next realized (it keeps its memory, so views of it and
    a JIT that captured it see the new values); a view writes into its base; any other tensor takes x's graph. A leaf
    stays a leaf: the value written is detached. Unlike `+=` and `t[i] = v`, allowed on leaves that require grad."""
    v = self._value_for(x, "assign")._broadcast_checked(self.shape, "assign", self.shape)
    if (self._base if self._base is not None else self).is_leaf: v = v.detach()
    self._write(v.uop)
    return self

  def masked_fill(self, mask: Tensor, value) -> Tensor:
    """`value` where the bool `mask` (broadcast to this shape) is True, this tensor elsewhere."""
    if not isinstance(mask, lt.Tensor) or mask.dtype != dtypes.bool: raise TypeError(f"masked_fill: the mask must be a bool tensor, got {mask!r}")
    if isinstance(value, lt.Tensor) and value.ndim: raise ValueError(f"masked_fill: the value must be a number or a 0-d tensor, got shape {value.shape}")
    try: shape = broadcast_shape(self.shape, mask.shape)
    except ValueError: shape = None
    if shape != self.shape: raise ValueError(f"masked_fill: a mask of shape {mask.shape} does not broadcast to the tensor's shape {self.shape}")
    return mask.where(self._value_for(value, "masked_fill"), self)

  # ---- gather / scatter ----
  def _index_arg(self, index, op: str, dim: int) -> Tensor:
    """An int index tensor on this device, each index in [0, size of `dim`) as PyTorch requires: a constant (list, array)
    is checked now, a tensor on the device by the next host read."""
    n = self.shape[dim] if self.ndim else 1
    if any(isinstance(s, UOp) for s in self.shape): raise ValueError(f"{op} over a symbolic shape is not supported (docs/design/0029)")
    if isinstance(index, (list, tuple, np.ndarray, int)):
      a = np.asarray(index)
      if a.dtype.kind == "f" and a.size: raise TypeError(f"{op}: gathering with a float index {index!r}; indices must be integers")
      if (bad := a[(a < 0) | (a >= n)]).size: raise IndexError(f"{op}: index {int(bad.flat[0])} is out of range for dimension {dim} of size {n} (shape {self.shape})")
      return lt.Tensor(a.astype(np.int64), device=self.device)
    _check_index_dtype(index, op)
    if index.device != self.device: raise RuntimeError(f"{op}: the index is on {index.device}, the tensor on {self.device}; move one with .to()")
    lt.check_index(index, 0, n, f"{op} along dimension {dim}")
    return _wide_index(index)

  def gather(self, dim: int, index) -> Tensor:
    """out[i][j] = self[index[i][j]][j] for dim 0, and likewise for other dims (torch.gather); index has this tensor's ndim."""
    d = self._axis(dim)
    index = self._index_arg(index, "gather", d)
    if index.ndim != self.ndim or any(i > s for k, (i, s) in enumerate(zip(index.shape, self.shape)) if k != d):
      raise ValueError(f"gather: an index of shape {index.shape} does not fit the tensor's shape {self.shape} outside dim {d}")
    return self._gather(d, index)

  def _gather(self, d: int, index: Tensor) -> Tensor:
    """Along d, the elements `index` (an int tensor of this ndim, no larger on the other axes) names: one GATHER, each
    output element a load of its index and a load of the element it names. An index outside [0, size) reads 0; the
    caller has it checked (check_index), so that raises at the next host read."""
    if self.ndim == 0: return self.reshape(1)._gather(0, index.reshape(1)).reshape(())
    x = self if index.shape[:d] + index.shape[d+1:] == self.shape[:d] + self.shape[d+1:] else \
      self.shrink(tuple((0, s) if k == d else (0, i) for k, (i, s) in enumerate(zip(index.shape, self.shape))))
    # an empty axis has nothing to read and no buffer to read it from (any index into it is out of range, reported by its
    # check): a sum over nothing gives the zeros, and a gradient of the table's shape
    if self.shape[d] == 0: return _pick(x.unsqueeze(-1).transpose(d, -1), index.unsqueeze(-1) == lt.Tensor.arange(0, dtype=index.dtype, device=self.device))
    return lt._value(x.uop.gather(index.uop, d))

  def take_along_dim(self, indices, dim: int | None = None) -> Tensor:
    """torch.take_along_dim: gather along dim with an index that broadcasts against this tensor (both flattened if dim is None)."""
    if dim is None: return (flat := self.flatten()).gather(0, flat._index_arg(indices, "take_along_dim", 0).flatten())
    d = self._axis(dim)
    indices = self._index_arg(indices, "take_along_dim", d)
    shape = list(broadcast_shape(tuple(s if k != d else 1 for k, s in enumerate(self.shape)), tuple(s if k != d else 1 for k, s in enumerate(indices.shape))))
    x = self.expand(tuple(self.shape[k] if k == d else s for k, s in enumerate(shape)))
    return x.gather(d, indices.expand(tuple(indices.shape[k] if k == d else s for k, s in enumerate(shape))))

  def index_select(self, dim: int, index) -> Tensor:
    """The entries at `index` (a 1-D int tensor or list) along dim, as torch.index_select."""
    d = self._axis(dim)
    index = self._index_arg(index, "index_select", d)
    if index.ndim > 1: raise ValueError(f"index_select: the index must be 1-D, got shape {index.shape}")
    if self.ndim == 0: return self.reshape(1)[index.reshape(-1)].reshape(())
    return self[(slice(None),) * d + (index.reshape(-1),)]

  def _scatter_args(self, dim: int, index, src, op: str) -> tuple[int, Tensor, Tensor]:
    """(dim, index, src shrunk to the index's shape and cast to this dtype), each checked as torch.scatter checks them."""
    d = self._axis(dim)
    index = self._index_arg(index, op, d)
    src = src if isinstance(src, lt.Tensor) else self._const(src)
    if src.device != self.device: raise RuntimeError(f"{op}: src is on {src.device}, the tensor on {self.device}; move one with .to()")
    if index.ndim != self.ndim or any(i > s for k, (i, s) in enumerate(zip(index.shape, self.shape)) if k != d):
      raise ValueError(f"{op}: an index of shape {index.shape} does not fit the tensor's shape {self.shape} outside dim {d}")
    if src.ndim:
      if src.ndim != index.ndim or any(i > s for i, s in zip(index.shape, src.shape)):
        raise ValueError(f"{op}: src of shape {src.shape} is smaller than the index of shape {index.shape}")
      src = src.shrink(tuple((0, i) for i in index.shape))
    return d, index, src.cast(self.dtype)._broadcast_to(index.shape)

  def _scatter_hits(self, dim: int, index, src, op: str) -> tuple[int, Tensor, Tensor, Tensor]:
    """(dim, index, src shrunk to the index's shape as (..., 1) for the hit axis, hit: index == each position along dim)."""
    d, index, src = self._scatter_args(dim, index, src, op)
    n = self.shape[d] if self.ndim else 1
    return d, index, src.unsqueeze(-1), index.unsqueeze(-1) == lt.Tensor.arange(n, dtype=index.dtype, device=self.device)

  def _scatter(self, d: int, index: Tensor, src: Tensor, op=Ops.ADD) -> Tensor:
    """This tensor with each element of `src` (the index's shape and this dtype) added (op None: stored) at the position
    along d its index holds, in source order: one SCATTER, a kernel over the index after a copy of this tensor
    (docs/design/0017). An index outside [0, size) writes nothing; the caller has it checked (check_index)."""
    if self.ndim == 0: return self.reshape(1)._scatter(0, index.reshape(1), src.reshape(1), op).reshape(())
    return lt._value(self.uop.scatter(index.uop, src.uop, d, op))

  def _to_self(self, d: int, t: Tensor, fill) -> Tensor:
    """A reduction over the index's dim d (shape index.shape[:d] + (1,) + ... + (n,)) laid out as this tensor, `fill` outside the index."""
    t = t.transpose(d, -1).squeeze(-1) if self.ndim else t.reshape(())
    pads = tuple((0, s - i) for s, i in zip(self.shape, t.shape))
    return t.pad(pads, value=fill) if any(p for _, p in pads) else t

  def scatter(self, dim: int, index, src, reduce: str | None = None) -> Tensor:
    """A copy with out[index[i][j]][j] = src[i][j] for dim 0 (torch.scatter; of repeated indices the last wins); src may
    be a number; reduce 'add' or 'multiply' combines instead."""
    if reduce is not None:
      if reduce not in ("add", "multiply"): raise ValueError(f"scatter: reduce must be 'add' or 'multiply', got {reduce!r}")
      return self.scatter_reduce(dim, index, src, "sum" if reduce == "add" else "prod")
    d, index, src = self._scatter_args(dim, index, src, "scatter")
    return self._scatter(d, index, src, None)

  def scatter_reduce(self, dim: int, index, src, reduce: str, include_self: bool = True) -> Tensor:
    """A copy where the src values at each index are combined by reduce ('sum', 'prod', 'mean', 'amax', 'amin'), with this
    tensor's value too if include_self (torch.scatter_reduce; an int 'mean' rounds down)."""
    if reduce not in ("sum", "prod", "mean", "amax", "amin"):
      raise ValueError(f"scatter_reduce: reduce must be one of 'sum', 'prod', 'mean', 'amax', 'amin', got {reduce!r}")
    if reduce in ("sum", "mean") and self.dtype != dtypes.bool:  # direct: one add per source element
      d, index, src = self._scatter_args(dim, index, src, "scatter_reduce")
      count = lt.Tensor.zeros(self.shape, dtype=dtypes.int32, device=self.device)._scatter(d, index, lt.Tensor.ones(index.shape, dtype=dtypes.int32, device=self.device))
      total = (self if include_self else (count > 0).where(0, self))._scatter(d, index, src)
      if reduce == "sum": return total
      n = (count + 1 if include_self else count.maximum(1)).cast(self.dtype)
      return (count > 0).where(total / n if self.dtype.is_float() else total // n, self)
    d, index, src, hit = self._scatter_hits(dim, index, src, "scatter_reduce")
    ax = d if self.ndim else 0
    keep = lambda t: t.unsqueeze(ax)
    lo, hi = min_max(self.dtype)
    count = self._to_self(d, keep(hit.sum(ax, dtype=dtypes.int32)), 0)
    if reduce in ("sum", "mean"): r = self._to_self(d, keep(hit.where(src, 0).sum(ax, dtype=self.dtype)), 0)
    elif reduce == "prod": r = self._to_self(d, keep(hit.where(src, 1).prod(ax, dtype=self.dtype)), 1)
    elif reduce == "amax": r = self._to_self(d, keep(_extreme(hit.where(src, lo), "max", ax, lo)), lo)
    else: r = self._to_self(d, keep(_extreme(hit.where(src, hi), "min", ax, hi)), hi)
    if include_self:
      if reduce == "sum": return self + r
      if reduce == "prod": return self * r
      if reduce == "amax": return self.maximum(r)
      if reduce == "amin": return self.minimum(r)
      total, n = self + r, (count + 1).cast(self.dtype)
    else:
      if reduce != "mean": return (count > 0).where(r, self)
      total, n = r, count.maximum(1).cast(self.dtype)
    mean = total / n if self.dtype.is_float() else total // n
    return (count > 0).where(mean, self)

  def scatter_add(self, dim: int, index, src) -> Tensor:
    """A copy with src added at the index along dim (torch.scatter_add)."""
    return self.scatter_reduce(dim, index, src, "sum")

  def one_hot(self, num_classes: int = -1) -> Tensor:
    """int64 one-hot vectors on a new last axis; num_classes=-1 takes max + 1, which runs the tensor to find it."""
    return one_hot(self, num_classes)

  # ---- joining and splitting ----
  def cat(self, *others: Tensor, dim: int = 0) -> Tensor:
    """Join tensors along dim (their dtypes promote); Tensor.cat([a, b], dim) works too."""
    ts, dim = _tensors_and_dim(self, others, dim)
    if not ts: raise ValueError("cat needs at least one tensor")
    d = ts[0]._axis(dim)
    for t in ts:
      if t.ndim != ts[0].ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, ts[0].shape)) if i != d):
        raise ValueError(f"cat: shapes {[x.shape for x in ts]} differ outside dim {d}")
      if t.device != ts[0].device: raise RuntimeError(f"cat: tensors are on different devices: {ts[0].device} and {t.device}")
    dt = ts[0].dtype
    for t in ts[1:]: dt = promote_types(dt, t.dtype)
    if len(ts) > CAT_PIECES:
      # its kernel gets a box of code per piece (docs/design/0016), and gcc's time grows with them (300 pieces: 3.5 s,
      # past the 2 s a kernel may take): groups of CAT_PIECES are joined into buffers of their own, then the groups
      return lt.Tensor.cat(*[lt.Tensor.cat(*[t.cast(dt) for t in ts[i:i + CAT_PIECES]], dim=d).contiguous()
                             for i in range(0, len(ts), CAT_PIECES)], dim=d)
    total, out, off = sum(t.shape[d] for t in ts), None, 0
    for t in ts:  # each padded out to the full length, then picked where it lies: one fused kernel, whose boxes (one
      # per piece, docs/design/0016) fold every pick and every other piece's load away; a pick, not a sum, so a -0.0 stays
      grow = tuple((off, total - off - t.shape[d]) if i == d else (0, 0) for i in range(t.ndim))
      p = lt.Tensor(t.cast(dt).uop.pad(grow))
      out = p if out is None else lt.Tensor(t.ones_like(dtype=dtypes.bool).uop.pad(grow)).where(p, out)
      off += t.shape[d]
    return out

  def stack(self, *others: Tensor, dim: int = 0) -> Tensor:
    """Join tensors of one shape along a new axis dim; Tensor.stack([a, b], dim) works too."""
    ts, dim = _tensors_and_dim(self, others, dim)
    if not ts: raise ValueError("stack needs at least one tensor")
    if any(t.shape != ts[0].shape for t in ts): raise ValueError(f"stack: all tensors need one shape, got {[t.shape for t in ts]}")
    d = ts[0]._axis(dim, ts[0].ndim + 1)
    return ts[0].unsqueeze(d).cat(*[t.unsqueeze(d) for t in ts[1:]], dim=d)

  def split(self, split_size_or_sections, dim: int = 0) -> tuple[Tensor, ...]:
    """Pieces of split_size along dim (the last may be shorter), or pieces of the listed sizes, as torch.split."""
    d = self._axis(dim)
    n = self.shape[d]
    if isinstance(split_size_or_sections, (int, np.integer)):
      s = int(split_size_or_sections)
      if s <= 0 and n: raise ValueError(f"split: split_size must be positive, got {s}")
      sizes = [min(s, n - i) for i in range(0, n, s)] if n else [0]
    else:
      sizes = [int(s) for s in split_size_or_sections]
      if sum(sizes) != n or any(s < 0 for s in sizes): raise ValueError(f"split: sizes {sizes} do not add up to {n}, the size of dim {d} of shape {self.shape}")
    offs = list(itertools.accumulate(sizes, initial=0))  # plain ints: NumPy's cumsum cost more than a piece's view
    return tuple(self.shrink(tuple((offs[k], offs[k+1]) if i == d else None for i in range(self.ndim))) for k in range(len(sizes)))

  def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """At most `chunks` pieces of ceil(n / chunks) along dim, as torch.chunk."""
    if chunks <= 0: raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    n = self.shape[self._axis(dim)]
    return self.split(math.ceil(n / chunks), dim) if n else self.split([0] * chunks, dim)

  def unbind(self, dim: int = 0) -> tuple[Tensor, ...]:
    """The slices along dim, each without that axis."""
    d = self._axis(dim)
    return tuple(self[(slice(None),) * d + (i,)] for i in range(self.shape[d]))

  def repeat(self, *sizes) -> Tensor:
    """Tile the tensor sizes[i] times along each axis (leading sizes add axes), as torch.Tensor.repeat."""
    sizes = _ints(sizes)
    if len(sizes) < self.ndim: raise ValueError(f"repeat: {len(sizes)} sizes {sizes} for a tensor of {self.ndim} dimensions (shape {self.shape})")
    if any(r < 0 for r in sizes): raise ValueError(f"repeat: negative size in {sizes}")
    shape = (1,) * (len(sizes) - self.ndim) + self.shape
    x = self.reshape(tuple(v for s in shape for v in (1, s))).expand(tuple(v for r, s in zip(sizes, shape) for v in (r, s)))
    return lt.Tensor(x.reshape(tuple(r * s for r, s in zip(sizes, shape))).uop)  # a new tensor, as in torch: not a view of this one

  def tile(self, *dims) -> Tensor:
    """torch.tile: repeat, where fewer dims than axes repeat the last axes."""
    dims = _ints(dims)
    return self.repeat((1,) * (self.ndim - len(dims)) + dims)

  def repeat_interleave(self, repeats=None, dim: int | None = None, *, output_size: int | None = None) -> Tensor:
    """Each element repeated `repeats` times along dim (flattened if None), as torch.repeat_interleave: an int, a list
    or an int tensor (0-d, one element or one count per element). With a tensor of counts the output's length is their
    sum: without `output_size` it is read to the host (a sync, as torch's on a GPU; refused inside a jitted function),
    with it nothing is read and the sum is checked on the device, by the next host read. `t.repeat_interleave()` (no
    repeats) treats t as the counts and repeats their positions. Each output element is one gather from the element
    whose range of the counts' running sum holds its position (a binary search of that sum: O(log n) loads)."""
    if repeats is None:  # torch.repeat_interleave(counts)
      if self.ndim > 1: raise ValueError(f"repeat_interleave: the counts must be 0-d or 1-D, got shape {self.shape}")
      return lt.Tensor.arange(self.numel(), dtype=dtypes.int64, device=self.device).repeat_interleave(self, 0, output_size=output_size)
    x, d = (self.flatten(), 0) if dim is None else (self.reshape(1) if self.ndim == 0 else self, self._axis(dim))
    n = x.shape[d]
    if isinstance(repeats, lt.Tensor):
      if not repeats.dtype.is_int(): raise TypeError(f"repeat_interleave: repeats must be an integer tensor, got {repeats.dtype}")
      if repeats.ndim > 1 or repeats.numel() not in (1, n):
        raise ValueError(f"repeat_interleave: repeats of shape {repeats.shape} for a dim of size {n}; give one count, or one per element")
      if repeats.device != self.device: raise RuntimeError(f"repeat_interleave: repeats are on {repeats.device}, the tensor on {self.device}")
      if repeats.numel() == 1 and output_size is None: repeats = int(_read_ints("repeat_interleave", repeats.reshape(()))[0])
    elif isinstance(repeats, (list, tuple, np.ndarray)):
      repeats = np.asarray(repeats)
      if repeats.size and repeats.dtype.kind not in "iu" or repeats.ndim > 1 or repeats.size not in (1, n):
        raise ValueError(f"repeat_interleave: repeats {repeats.tolist()} for a dim of size {n}; give one int count, or one per element")
      repeats = int(repeats.reshape(())) if repeats.size == 1 else repeats.astype(np.int64)
    elif not isinstance(repeats, (int, np.integer)) or isinstance(repeats, bool): raise TypeError(f"repeat_interleave: repeats must be an int or an int tensor, got {repeats!r}")
    if isinstance(repeats, (int, np.integer)):
      if repeats < 0: raise ValueError(f"repeat_interleave: repeats must be >= 0, got {repeats}")
      if output_size is not None and output_size != n * repeats:
        raise ValueError(f"repeat_interleave: output_size={output_size}, but {n} elements repeated {repeats} times give {n * repeats}")
      y = x.unsqueeze(d + 1)
      return lt.Tensor(y.expand(y.shape[:d+1] + (int(repeats),) + y.shape[d+2:]).flatten(d, d + 1).uop)  # a new tensor, not a view
    if isinstance(repeats, np.ndarray):  # counts known here: the index is a constant
      if (repeats < 0).any(): raise ValueError(f"repeat_interleave: repeats must be >= 0, got {repeats.tolist()}")
      if output_size is not None and output_size != int(repeats.sum()):
        raise ValueError(f"repeat_interleave: output_size={output_size}, but the repeats sum to {int(repeats.sum())}")
      return x.index_select(d, np.repeat(np.arange(n), repeats))
    counts = repeats.reshape(-1).expand(n) if n else repeats.reshape(-1)[:0]
    ends = counts.cumsum(0, dtype=dtypes.int64)  # where each element's copies end
    if output_size is None:
      if n == 0: output_size = 0
      else:
        total, least = _read_ints("repeat_interleave", ends[-1], counts.min())
        if least < 0: raise ValueError(f"repeat_interleave: repeats must be >= 0, got a count of {least}")
        output_size = total
    elif n:  # checked on the device: each count >= 0, and their sum is output_size
      lt.check_index(counts, 0, 2**62, "repeat_interleave (a negative count in repeats)")
      lt.check_index(ends[-1:] - output_size, 0, 1, f"repeat_interleave (the repeats minus output_size={output_size}, which must be 0)")
    if output_size < 0 or n == 0 and output_size: raise ValueError(f"repeat_interleave: output_size={output_size} for {n} elements along dim {d}")
    src = _search(ends, lt.Tensor.arange(output_size, dtype=dtypes.int64, device=self.device), True).minimum(max(n - 1, 0))
    return x._gather(d, src.reshape((1,) * d + (output_size,) + (1,) * (x.ndim - d - 1)).expand(x.shape[:d] + (output_size,) + x.shape[d+1:]))

  def roll(self, shifts, dims=None) -> Tensor:
    """Shift elements along dims, wrapping around (torch.roll); with no dims the tensor is rolled flat."""
    if dims is None: return self.flatten().roll(shifts, 0).reshape(self.shape)
    shifts, dims = (tuple(v) if isinstance(v, (tuple, list)) else (v,) for v in (shifts, dims))
    if len(shifts) != len(dims): raise ValueError(f"roll: {len(shifts)} shifts for {len(dims)} dims")
    x = self
    for s, d in zip(shifts, dims):
      d = self._axis(d)
      n = x.shape[d]
      if n == 0 or s % n == 0: continue
      x = x.cat(x, dim=d).shrink(tuple((n - s % n, 2 * n - s % n) if i == d else None for i in range(x.ndim)))
    return x._new_value() if x is self else x  # a roll by whole turns moves nothing, and is still a new tensor

  def _tri(self, diagonal: int, lower: bool) -> Tensor:
    if self.ndim < 2: raise ValueError(f"{'tril' if lower else 'triu'}: needs at least 2 dimensions, got shape {self.shape}")
    r, c = self.shape[-2:]
    off = lt.Tensor.arange(c, device=self.device) - lt.Tensor.arange(r, device=self.device).unsqueeze(-1)
    return ((off <= diagonal) if lower else (off >= diagonal)).where(self, self.zeros_like())

  def tril(self, diagonal: int = 0) -> Tensor:
    """The lower triangle of the last two axes (j - i <= diagonal), zeros above."""
    return self._tri(diagonal, True)

  def triu(self, diagonal: int = 0) -> Tensor:
    """The upper triangle of the last two axes (j - i >= diagonal), zeros below."""
    return self._tri(diagonal, False)

  def meshgrid(self, *others: Tensor, indexing: str = "ij") -> list[Tensor]:
    """Coordinate grids from 1-D tensors, as torch.meshgrid ('ij' or 'xy' indexing); Tensor.meshgrid([a, b]) works too."""
    ts = [*self, *others] if isinstance(self, (list, tuple)) else [self, *others]
    if indexing not in ("ij", "xy"): raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    if any(t.ndim > 1 for t in ts): raise ValueError(f"meshgrid: the tensors must be 0-D or 1-D, got shapes {[t.shape for t in ts]}")
    if indexing == "xy" and len(ts) > 1:
      out = ts[1].meshgrid(ts[0], *ts[2:])
      return [out[1], out[0], *out[2:]]
    shape = tuple(t.numel() for t in ts)
    return [t.reshape(tuple(-1 if k == i else 1 for k in range(len(ts)))).expand(shape) for i, t in enumerate(ts)]

  def unflatten(self, dim: int, sizes) -> Tensor:
    """Split axis dim into the axes `sizes` (one may be -1)."""
    d = self._axis(dim)
    sizes = tuple(sizes)
    known = prod(s for s in sizes if s != -1)
    if sizes.count(-1) > 1: raise ValueError(f"unflatten: only one of the sizes {sizes} can be -1")
    if -1 in sizes and known == 0: raise ValueError(f"unflatten: the -1 in sizes {sizes} cannot be inferred beside a size of 0")
    if (prod(sizes) != self.shape[d] if -1 not in sizes else self.shape[d] % known):
      raise ValueError(f"unflatten: sizes {sizes} do not multiply to {self.shape[d]}, the size of dim {d} of shape {self.shape}")
    # the -1 is inferred from this axis, not left to reshape: with no elements in the tensor, only the axis fixes it
    sizes = tuple(self.shape[d] // known if s == -1 else s for s in sizes)
    return self.reshape(self.shape[:d] + sizes + self.shape[d+1:])

  def unfold(self, dimension: int, size: int, step: int) -> Tensor:
    """Windows of `size` every `step` along dimension, on a new last axis (torch.Tensor.unfold). Movement ops only: the
    axis tiled and read back in rows of n+1 holds x[k + j] at (k, j), so the windows are a strided slice of it."""
    d = self._axis(dimension)
    x = self if self.ndim else self.reshape(1)
    n = x.shape[d]
    if not 0 <= size <= n or step <= 0: raise ValueError(f"unfold: need 0 <= size <= {n} (dim {d} of shape {self.shape}) and step > 0, got size {size}, step {step}")
    count = (n - size) // step + 1
    other = [k for k in range(x.ndim) if k != d]
    O = tuple(x.shape[k] for k in other)
    if size == 0: w = x.permute(other + [d]).shrink(tuple(None for _ in O) + ((0, 0),)).unsqueeze(-2).expand(O + (count, 0))
    else:
      e = math.ceil(size * (n + 1) / n)
      t = x.permute(other + [d]).unsqueeze(-2).expand(O + (e, n)).reshape(O + (e * n,))
      t = t.shrink(tuple(None for _ in O) + ((0, size * (n + 1)),)).reshape(O + (size, n + 1))
      t = t.shrink(tuple(None for _ in O) + (None, (0, min(n + 1, count * step))))
      t = t.pad(tuple((0, 0) for _ in O) + ((0, 0), (0, max(0, count * step - n - 1))))
      w = t.reshape(O + (size, count, step)).shrink(tuple(None for _ in O) + (None, None, (0, 1))).reshape(O + (size, count)).transpose(-1, -2)
    out = w.permute(list(range(d)) + [len(O)] + list(range(d, len(O))) + [len(O) + 1])
    return out if self.ndim else out.reshape(size)

  def narrow(self, dim: int, start, length: int) -> Tensor:
    """The `length` entries of dim from `start` (negative counts from the end), as torch.narrow: a view for an int
    start. A 0-d int tensor start is not read to the host: the entries are gathered at start + arange(length), and the
    start is checked on the device (by the next host read), so it works inside a jitted function."""
    if self.ndim == 0: raise ValueError("narrow: needs at least 1 dim, got a 0-d tensor")
    d = self._axis(dim)
    n = self.shape[d]
    if not isinstance(length, (int, np.integer)) or isinstance(length, bool) or length < 0: raise ValueError(f"narrow: length must be an int >= 0, got {length!r}")
    if isinstance(start, lt.Tensor):
      if start.ndim or not start.dtype.is_int(): raise TypeError(f"narrow: a tensor start must be a 0-d integer tensor, got shape {start.shape}, {start.dtype}")
      if start.device != self.device: raise RuntimeError(f"narrow: start is on {start.device}, the tensor on {self.device}")
      if length > n: raise ValueError(f"narrow: length {length} exceeds the size {n} of dim {d} (shape {self.shape})")
      at = _wide_index(start).cast(dtypes.int64)
      at = (at < 0).where(at + n, at)
      lt.check_index(at.reshape(1), 0, n - length + 1, f"narrow start (dim {d} of shape {self.shape}, length {length})")
      idx = at + lt.Tensor.arange(length, dtype=dtypes.int64, device=self.device)
      return self._gather(d, idx.reshape((1,) * d + (length,) + (1,) * (self.ndim - d - 1)).expand(self.shape[:d] + (length,) + self.shape[d+1:]))
    if not isinstance(start, (int, np.integer)) or isinstance(start, bool): raise TypeError(f"narrow: start must be an int or a 0-d int tensor, got {start!r}")
    if not -n <= start <= n: raise IndexError(f"narrow: start {start} is out of range [-{n}, {n}] for dim {d} of shape {self.shape}")
    start = int(start) % n if start < 0 else int(start)
    if start + length > n: raise ValueError(f"narrow: start {start} + length {length} exceeds the size {n} of dim {d} (shape {self.shape})")
    return self.shrink(tuple((start, start + length) if k == d else None for k in range(self.ndim)))

  def movedim(self, source, destination) -> Tensor:
    """The axes `source` moved to the positions `destination` (ints or sequences of one length), the others keeping
    their order, as torch.movedim: a view."""
    src, dst = (list(v) if isinstance(v, (tuple, list)) else [v] for v in (source, destination))
    if len(src) != len(dst): raise ValueError(f"movedim: source {source} and destination {destination} must name as many dims")
    src, dst = [self._axis(a) for a in src], [self._axis(a) for a in dst]
    for name, v, given in (("source", src, source), ("destination", dst, destination)):
      if len(set(v)) != len(v): raise ValueError(f"movedim: repeated dim in {name} {given} (shape {self.shape})")
    order: list = [None] * self.ndim
    for a, b in zip(src, dst): order[b] = a
    rest = iter(a for a in range(self.ndim) if a not in src)
    return self.permute([a if a is not None else next(rest) for a in order]) if self.ndim else self._view(Ops.RESHAPE, ())
  moveaxis = movedim

  def rot90(self, k: int = 1, dims=(0, 1)) -> Tensor:
    """Rotate by k quarter turns in the plane of dims, from the first axis towards the second (torch.rot90)."""
    if len(dims) != 2: raise ValueError(f"rot90: dims must name 2 dims, got {dims}")
    if self.ndim < 2: raise ValueError(f"rot90: needs at least 2 dims, got shape {self.shape}")
    a, b = self._axis(dims[0]), self._axis(dims[1])
    if a == b: raise ValueError(f"rot90: dims {dims} must be two different dims")
    k %= 4
    if k == 0: return self._new_value()
    if k == 2: return self.flip((a, b))
    return self.flip(b).transpose(a, b) if k == 1 else self.flip(a).transpose(a, b)

  # ---- diagonals and products ----
  def diagonal(self, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The offset diagonal of the plane of dim1 and dim2 (above the main one for offset > 0) as a new last axis, the
    other axes first (torch.diagonal): a view, empty where the offset passes the edge."""
    if self.ndim < 2: raise ValueError(f"diagonal: needs at least 2 dims, got shape {self.shape}")
    a, b = self._axis(dim1), self._axis(dim2)
    if a == b: raise ValueError(f"diagonal: dim1 and dim2 name the same dim {a} (shape {self.shape})")
    return _take_diagonal(self.permute([k for k in range(self.ndim) if k not in (a, b)] + [a, b]), int(offset))

  def diag_embed(self, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Tensor:
    """The last axis placed on the offset diagonal of a new plane of sizes n + |offset| at dims dim1 and dim2 of the
    result (one more dim than this tensor), zeros elsewhere (torch.diag_embed)."""
    if self.ndim == 0: raise ValueError("diag_embed: needs at least 1 dim, got a 0-d tensor")
    nd = self.ndim + 1
    a, b = self._axis(dim1, nd), self._axis(dim2, nd)
    if a == b: raise ValueError(f"diag_embed: dim1 and dim2 name the same dim {a} of the result")
    x = _embed_diagonal(self, int(offset))
    lead = iter(range(nd - 2))
    return x.permute([nd - 2 if k == a else nd - 1 if k == b else next(lead) for k in range(nd)])

  def diag(self, diagonal: int = 0) -> Tensor:
    """torch.diag: a 1-D tensor becomes the square matrix with it on the `diagonal`-th diagonal; a 2-D one gives that
    diagonal (a copy)."""
    if self.ndim == 1: return _embed_diagonal(self, int(diagonal))
    if self.ndim == 2: return self.diagonal(diagonal)._new_value()
    raise ValueError(f"diag: needs a 1-D or 2-D tensor, got shape {self.shape}")

  def trace(self) -> Tensor:
    """The sum of the main diagonal of a 2-D tensor (ints and bools sum into int64, as torch.trace)."""
    if self.ndim != 2: raise ValueError(f"trace: needs a 2-D tensor, got shape {self.shape}")
    return self.diagonal().sum()

  @staticmethod
  def tril_indices(row: int, col: int, offset: int = 0, dtype=dtypes.int64, device=None) -> Tensor:
    """The (2, N) row and column indices of the lower triangle (j - i <= offset) of a row x col matrix, row by row
    (torch.tril_indices). Built on the host from the sizes alone and copied over."""
    return _tri_indices(row, col, offset, dtype, device, True)

  @staticmethod
  def triu_indices(row: int, col: int, offset: int = 0, dtype=dtypes.int64, device=None) -> Tensor:
    """The (2, N) indices of the upper triangle (j - i >= offset), row by row (torch.triu_indices)."""
    return _tri_indices(row, col, offset, dtype, device, False)

  def cross(self, other: Tensor, dim: int | None = None) -> Tensor:
    """The cross product of 3-vectors along dim (the first dim of size 3 if None, as torch.cross), broadcasting the
    other dims; dtypes promote."""
    try: shape = broadcast_shape(self.shape, other.shape)
    except ValueError: raise ValueError(f"cross: shapes {self.shape} and {other.shape} do not broadcast") from None
    a, b = self._broadcasted(other)
    if dim is None:
      if 3 not in shape: raise ValueError(f"cross: no dim of size 3 in the broadcast shape {shape}")
      d = shape.index(3)
    else:
      d = a._axis(dim)
      if shape[d] != 3: raise ValueError(f"cross: dim {dim} has size {shape[d]}, not 3 (shapes {self.shape} and {other.shape})")
    return a.roll(-1, d) * b.roll(1, d) - a.roll(1, d) * b.roll(-1, d)

  def kron(self, other: Tensor) -> Tensor:
    """The Kronecker product: block (i, j, ...) is self[i, j, ...] * other (torch.kron); the fewer dims get leading 1s."""
    nd = max(self.ndim, other.ndim)
    sa, sb = (1,) * (nd - self.ndim) + self.shape, (1,) * (nd - other.ndim) + other.shape
    out = self.reshape(tuple(v for s in sa for v in (s, 1))) * other.reshape(tuple(v for s in sb for v in (1, s)))
    return out.reshape(tuple(x * y for x, y in zip(sa, sb)))

  def cdist(self, x2: Tensor, p: float = 2.0, compute_mode: str = "use_mm_for_euclid_dist_if_necessary") -> Tensor:
    """The p-norm distances between the rows of self (..., P, M) and of x2 (..., R, M): (..., P, R), batch dims
    broadcast (torch.cdist; p = 0 counts differing coordinates, inf takes the largest). As torch's compute_mode says,
    p = 2 with P or R over 25 (or 'use_mm_for_euclid_dist') is a matmul, sqrt(max(|a|^2 + |b|^2 - 2 a.b, 0)) -- fast,
    but it cancels for near rows (equal rows come out ~1e-8 apart in float64, as in torch); everything else is one
    fused reduce over the differences, O(P R M). The gradient at a zero distance, or for p < 1 at a zero coordinate
    difference, is 0, and for p = inf each tied coordinate takes all of it, as torch's."""
    modes = ("use_mm_for_euclid_dist_if_necessary", "use_mm_for_euclid_dist", "donot_use_mm_for_euclid_dist")
    if compute_mode is not None and compute_mode not in modes: raise ValueError(f"cdist: compute_mode must be one of {modes}, got {compute_mode!r}")
    if not isinstance(x2, lt.Tensor): raise TypeError(f"cdist: x2 must be a Tensor, got {type(x2).__name__}")
    if not (self.dtype.is_float() and x2.dtype.is_float()): raise TypeError(f"cdist: needs float tensors, got {self.dtype} and {x2.dtype}")
    if self.ndim < 2 or x2.ndim < 2 or self.shape[-1] != x2.shape[-1]:
      raise ValueError(f"cdist: x1 (..., P, M) and x2 (..., R, M) need at least 2 dims and one M, got shapes {self.shape} and {x2.shape}")
    if not p >= 0: raise ValueError(f"cdist: p must be >= 0, got {p}")
    try: batch = broadcast_shape(self.shape[:-2], x2.shape[:-2])
    except ValueError: raise ValueError(f"cdist: the batch dims of shapes {self.shape} and {x2.shape} do not broadcast") from None
    x1, x2 = self._broadcast_to(batch + self.shape[-2:]), x2._broadcast_to(batch + x2.shape[-2:])
    if p == 2 and (compute_mode == modes[1] or compute_mode in (None, modes[0]) and max(x1.shape[-2], x2.shape[-2]) > 25):
      s = (x1 * x1).sum(-1, keepdim=True) + (x2 * x2).sum(-1).unsqueeze(-2) - 2 * (x1 @ x2.transpose(-1, -2))
      zero = s <= 0  # clamped at 0 as torch's, with no gradient there (the root of 1 is taken instead, as below)
      return zero.where(0.0, zero.where(1.0, s).sqrt())
    diff = x1.unsqueeze(-2) - x2.unsqueeze(-3)
    if self.shape[-1] == 0: return diff.sum(-1)
    a = diff.abs()
    if p == 0: return (diff != 0).cast(diff.dtype).sum(-1)
    if p == 1: return a.sum(-1)
    if p == math.inf:  # every coordinate that ties for the max takes the whole gradient, as torch's (max would share it)
      top = a.max(axis=-1).detach()
      return top + (a == top.unsqueeze(-1)).where(a - a.detach(), 0).sum(-1)
    if p == 2: s = (diff * diff).sum(-1)
    else: s = (a == 0).where(0.0, (a == 0).where(1.0, a).pow(p)).sum(-1)  # |d|^p of 1 at d = 0: its derivative is no inf there
    zero = s == 0  # the root of a zero sum is taken of 1 instead, so its infinite derivative never meets the zero below it
    return zero.where(0.0, zero.where(1.0, s).sqrt() if p == 2 else zero.where(1.0, s).pow(1 / p))

  # ---- counting and searching ----
  def bincount(self, weights: Tensor | None = None, minlength: int = 0) -> Tensor:
    """How often each value 0..max occurs in this 1-D int tensor (at least minlength bins), or the sum of its weights,
    as torch.bincount: int64 counts; float32 weights sum as float32, any others as float64. The number of bins depends
    on the values: max and min are read to the host (a sync; refused inside a jitted function). One scatter-add:
    O(input + bins)."""
    if self.ndim != 1 or not self.dtype.is_int(): raise TypeError(f"bincount: needs a 1-D int tensor, got shape {self.shape}, {self.dtype}")
    if minlength < 0: raise ValueError(f"bincount: minlength must be >= 0, got {minlength}")
    if weights is not None:
      if not isinstance(weights, lt.Tensor) or weights.shape != self.shape:
        raise ValueError(f"bincount: weights must have the input's shape {self.shape}, got {getattr(weights, 'shape', weights)}")
      if weights.device != self.device: raise RuntimeError(f"bincount: weights are on {weights.device}, the input on {self.device}")
    n, size = self.shape[0], minlength
    lt._host_read("bincount")
    if n:
      most, least = _read_ints("bincount", self.max(), self.min())
      if least < 0: raise ValueError(f"bincount: the values must be >= 0, got {least}")
      size = max(size, most + 1)
    dt = dtypes.int64 if weights is None else dtypes.float32 if weights.dtype == dtypes.float32 else dtypes.float64
    src = lt.Tensor.ones(n, dtype=dt, device=self.device) if weights is None else weights.cast(dt)
    return lt.Tensor.zeros(size, dtype=dt, device=self.device)._scatter(0, _wide_index(self), src)

  def histc(self, bins: int = 100, min: float = 0, max: float = 0) -> Tensor:
    """Counts of the values in `bins` equal-width bins over [min, max] (the last bin closed; values outside, and NaN,
    ignored), in this float dtype, as torch.histc. min == max == 0 takes the data's min and max, read to the host (a
    sync, as torch's; refused inside a jitted function), widened by 1 each side if they are equal. Each value's bin is
    computed as torch does, (x - min) * bins / (max - min) in this dtype; then one scatter-add: O(input + bins)."""
    if not self.dtype.is_float(): raise TypeError(f"histc: needs a float tensor, got {self.dtype}")
    if not isinstance(bins, (int, np.integer)) or bins <= 0: raise ValueError(f"histc: bins must be a positive int, got {bins!r}")
    lo, hi = float(min), float(max)
    if lo > hi: raise ValueError(f"histc: max must be >= min, got min={min}, max={max}")
    x = self.flatten()
    if lo == hi == 0 and x.numel():
      # the data's range: read to be checked, and used as the tensors read (not constants, which a kernel would be
      # compiled anew for at every new range)
      lt._host_read("histc")
      lt.Tensor.realize(mn := x.min(), mx := x.max())
      lo, hi = float(mn.item()), float(mx.item())
      if not (math.isfinite(lo) and math.isfinite(hi)): raise ValueError(f"histc: the range [{lo}, {hi}] of the values is not finite")
      lo_t, hi_t = (mn - 1, mx + 1) if lo == hi else (mn, mx)
    else:
      if not (math.isfinite(lo) and math.isfinite(hi)): raise ValueError(f"histc: the range [{lo}, {hi}] is not finite")
      if lo == hi: lo, hi = lo - 1, hi + 1
      lo_t, hi_t = x._const(lo), x._const(hi)  # the edges in this dtype, as torch's bin edges
    inside = (x >= lo_t) & (x <= hi_t)
    pos = ((x - lo_t) * bins / (hi_t - lo_t)).cast(dtypes.int32).minimum(bins - 1)  # the max lands in the last bin
    acc = dtypes.float32 if self.dtype in (dtypes.float16, dtypes.bfloat16) else self.dtype
    out = lt.Tensor.zeros(bins + 1, dtype=acc, device=self.device)._scatter(0, inside.where(pos, bins), lt.Tensor.ones(x.shape, dtype=acc, device=self.device))
    return out[:bins].cast(self.dtype)

  def searchsorted(self, values, *, out_int32: bool = False, right: bool = False, side: str | None = None, sorter=None) -> Tensor:
    """torch.searchsorted(sorted_sequence, values), called as Tensor.searchsorted(seq, values) or seq.searchsorted(values):
    for each value, the index where it would be inserted into the sorted last axis of seq to keep it sorted (the
    leftmost such place; with right=True or side='right' the rightmost). seq is 1-D, or has the values' leading dims.
    `sorter` holds the indices that sort seq. A binary search: O(values x log n), one gather per value and step."""
    if side is not None:
      if side not in ("left", "right"): raise ValueError(f"searchsorted: side must be 'left' or 'right', got {side!r}")
      if right and side == "left": raise ValueError("searchsorted: side='left' and right=True contradict each other")
      right = side == "right"
    seq = self
    if seq.ndim == 0: raise ValueError("searchsorted: the sorted sequence must have at least 1 dim, got a 0-d tensor")
    if isinstance(values, lt.Tensor): v = values
    else:  # a number: in a float sequence's dtype, else int64 or (a float in an int sequence) float64, never truncated
      v = seq._const(values, dtype=None if seq.dtype.is_float() else dtypes.float64 if isinstance(values, float) else dtypes.int64)
    if v.device != seq.device: raise RuntimeError(f"searchsorted: values are on {v.device}, the sequence on {seq.device}")
    if seq.ndim > 1 and (v.ndim != seq.ndim or v.shape[:-1] != seq.shape[:-1]):
      raise ValueError(f"searchsorted: a sequence of shape {seq.shape} needs values with its leading dims {seq.shape[:-1]}, got shape {v.shape}")
    if sorter is not None:
      if not isinstance(sorter, lt.Tensor) or sorter.shape != seq.shape: raise ValueError(f"searchsorted: sorter must have the sequence's shape {seq.shape}")
      seq = seq.gather(-1, sorter)
    out = _search(seq, v, right)
    return out.cast(dtypes.int32) if out_int32 else out

  def bucketize(self, boundaries: Tensor, *, out_int32: bool = False, right: bool = False) -> Tensor:
    """The bucket of each value in the sorted 1-D boundaries (torch.bucketize): with right=False the i where
    boundaries[i-1] < x <= boundaries[i], with right=True where boundaries[i-1] <= x < boundaries[i]. Binary search."""
    if not isinstance(boundaries, lt.Tensor) or boundaries.ndim != 1:
      raise ValueError(f"bucketize: boundaries must be a 1-D tensor, got shape {getattr(boundaries, 'shape', boundaries)}")
    return boundaries.searchsorted(self, out_int32=out_int32, right=right)

  # ---- ops whose output shape depends on the values: the count is read to the host (a sync), then one scatter ----
  def masked_select(self, mask: Tensor) -> Tensor:
    """The entries where the bool mask (broadcast with this tensor) is True, as a 1-D tensor in row-major order
    (torch.masked_select). Reads the count to the host (a sync, as torch's on a GPU; refused inside a jitted function);
    the entries are then one gather. The gradient flows to the selected entries."""
    if not isinstance(mask, lt.Tensor) or mask.dtype != dtypes.bool: raise TypeError(f"masked_select: the mask must be a bool tensor, got {getattr(mask, 'dtype', mask)}")
    if mask.device != self.device: raise RuntimeError(f"masked_select: the mask is on {mask.device}, the tensor on {self.device}")
    try: shape = broadcast_shape(self.shape, mask.shape)
    except ValueError: raise ValueError(f"masked_select: a mask of shape {mask.shape} does not broadcast with the tensor's shape {self.shape}") from None
    pos = _true_positions(mask._broadcast_to(shape).flatten(), "masked_select")
    return self._broadcast_to(shape).flatten()._gather(0, pos)

  def nonzero(self, as_tuple: bool = False) -> Tensor | tuple[Tensor, ...]:
    """The int64 indices of the nonzero entries (NaN counts as nonzero), in row-major order: (count, ndim), or with
    as_tuple one 1-D tensor per dim (a 0-d tensor as 1-D), as torch.nonzero. Reads the count to the host (a sync;
    refused inside a jitted function); each entry's position is then one scatter, its coordinates index math."""
    return self._nonzero(as_tuple, "nonzero")

  def _nonzero(self, as_tuple: bool, what: str) -> Tensor | tuple[Tensor, ...]:
    pos = _true_positions((self != 0).flatten(), what)
    shape = self.shape or ((1,) if as_tuple else ())
    coords = [(pos // prod(shape[k+1:])) % s for k, s in enumerate(shape)]
    if as_tuple: return tuple(coords)
    return lt.Tensor.stack(coords, dim=1) if coords else pos.reshape(-1, 1)[:, :0]

  def argwhere(self) -> Tensor:
    """torch.argwhere: the (count, ndim) int64 indices of the nonzero entries; reads the count to the host, as nonzero."""
    return self._nonzero(False, "argwhere")

  def unique(self, sorted: bool = True, return_inverse: bool = False, return_counts: bool = False, dim: int | None = None):
    """The distinct values, ascending (torch.unique; sorted=False sorts too), with return_inverse the int64 index of
    each entry's value among them (this tensor's shape) and with return_counts how often each occurs; NaNs are each
    distinct, as torch's. A sort (tensor_math's, O(n log^2 n); 64-bit ints whose range fits 32 bits are sorted as
    32-bit offsets, read min and max first; other 64-bit dtypes sort by counting, O(n^2)), the count of distinct
    values read to the host (a sync; refused inside a jitted function), then scatters. No gradient, as torch."""
    if dim is not None:
      raise NotImplementedError("unique: dim= (distinct slices along a dim) needs a lexicographic sort of the slices, which lucidgrad lacks; "
                                "use dim=None")
    lt._host_read("unique")
    x, T = self.detach().flatten(), lt.Tensor
    n, dev = x.shape[0], self.device
    if n == 0:
      out = [x, T.zeros(self.shape, dtype=dtypes.int64, device=dev), T.zeros(0, dtype=dtypes.int64, device=dev)]
    else:
      keys = x
      if x.dtype in (dtypes.int64, dtypes.uint64):
        least, most = _read_ints("unique", x.min(), x.max())
        if most - least < 2**32: keys = (x - least).cast(dtypes.uint32)
      perm = keys.sort()[1]
      s = x._gather(0, perm)
      first = T.ones(1, dtype=dtypes.bool, device=dev).cat(s[1:] != s[:-1])  # where a run of equal values starts
      group = (first.cumsum(0, dtype=dtypes.int64) - 1).realize()
      count = _read_ints("unique", group[-1])[0] + 1
      # values and counts scattered into n slots, then cut to the count: kernels a new count does not recompile
      out = [T.zeros(n, dtype=x.dtype, device=dev)._scatter(0, group, s, None)[:count],
             T.zeros(n, dtype=dtypes.int64, device=dev)._scatter(0, perm, group, None).reshape(self.shape),
             T.zeros(n, dtype=dtypes.int64, device=dev)._scatter(0, group, T.ones(n, dtype=dtypes.int64, device=dev))[:count]]
    if not (return_inverse or return_counts): return out[0]
    return tuple(t for t, want in zip(out, (True, return_inverse, return_counts)) if want)

  # ---- padding ----
  def pad(self, padding, mode: str = "constant", value: float = 0.0) -> Tensor:
    """Pad with `mode` 'constant' (value), 'reflect', 'replicate' or 'circular'. `padding` is one (before, after) pair per
    axis, or PyTorch's flat form (last axis first). Negative pads crop first; the other modes then pad from what is left."""
    if mode not in ("constant", "reflect", "replicate", "circular"):
      raise ValueError(f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}")
    if padding and isinstance(padding[0], (tuple, list)) or padding and padding[0] is None:
      if len(padding) != self.ndim: raise ValueError(f"pad: got {len(padding)} pairs for a tensor of shape {self.shape}")
      pairs = [tuple(p) if p is not None else (0, 0) for p in padding]
    else:
      if len(padding) % 2 or len(padding) // 2 > self.ndim: raise ValueError(f"pad: flat padding {padding} does not fit shape {self.shape}")
      pairs = [(0, 0)] * (self.ndim - len(padding) // 2) + [(padding[i], padding[i+1]) for i in range(len(padding) - 2, -1, -2)]
    if any(isinstance(x, UOp) for p in pairs for x in p) or any(isinstance(s, UOp) for s in self.shape): return self._symbolic_pad(pairs, mode, value)
    crop = tuple((-min(b, 0), s + min(a, 0)) for (b, a), s in zip(pairs, self.shape))
    if any(e < st for st, e in crop): raise ValueError(f"pad: negative padding {padding} removes more than shape {self.shape} has")
    x = self.shrink(crop)
    grow = tuple((max(b, 0), max(a, 0)) for b, a in pairs)
    if all(g == (0, 0) for g in grow): return x._new_value()  # a crop: a new tensor all the same, as torch's pad
    if mode != "constant": return x._pad_from_edges(grow, mode, padding)
    padded = lt.Tensor(x.uop.pad(grow))
    if value == 0: return padded
    mask = lt.Tensor(x.ones_like(dtype=dtypes.bool).uop.pad(grow))
    return mask.where(padded, x._const(value))  # the value cast to the tensor's dtype (as torch does), never promoting it

  def _pad_from_edges(self, grow: tuple, mode: str, padding) -> Tensor:
    """Non-negative padding of one axis at a time by pieces of the tensor itself (flipped for reflect), joined by cat."""
    x = self
    for ax, (b, a) in enumerate(grow):
      if b == a == 0: continue
      n = x.shape[ax]
      cut = lambda lo, hi: x.shrink(tuple((lo, hi) if i == ax else None for i in range(x.ndim)))
      limit = n - 1 if mode == "reflect" else n if mode == "circular" else math.inf if n else 0
      if max(b, a) > limit: raise ValueError(f"pad: {mode} padding {padding} needs at most {limit} on dim {ax} of shape {self.shape}")
      if mode == "reflect": parts = [cut(1, b + 1).flip(ax), x, cut(n - 1 - a, n - 1).flip(ax)]
      elif mode == "circular": parts = [cut(n - b, n), x, cut(0, a)]
      else:
        edge = lambda e, k: e.expand(tuple(k if i == ax else s for i, s in enumerate(e.shape)))
        parts = [edge(cut(0, 1), b), x, edge(cut(n - 1, n), a)]
      x = lt.Tensor.cat([p for p in parts if p.shape[ax]], dim=ax)
    return x

def one_hot(t: Tensor, num_classes: int = -1) -> Tensor:
  """int64 one-hot vectors of the int tensor t on a new last axis (torch.nn.functional.one_hot); num_classes=-1 takes
  t.max() + 1, which runs t to find it."""
  if not t.dtype.is_int(): raise TypeError(f"one_hot: needs an integer tensor, got {t.dtype}")
  if num_classes < 0: num_classes = int(t.max().item()) + 1 if t.numel() else 0
  lt.check_index(t, 0, num_classes, "one_hot class")
  return (t.unsqueeze(-1) == lt.Tensor.arange(num_classes, dtype=t.dtype, device=t.device)).cast(dtypes.int64)
