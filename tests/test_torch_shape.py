"""Shape, index and linear-algebra-ish ops held to PyTorch on the CPU (issue 12): diag, diagonal, diag_embed, trace,
tril/triu_indices, cross, kron, rot90, flatten/unflatten, repeat_interleave, narrow, movedim, cdist, bincount, histc,
searchsorted, bucketize, masked_select, nonzero, argwhere and unique. Values and gradients (where torch has them) on
contiguous and non-contiguous inputs, negative dims, empty results, 0-d inputs, ties; ops whose output size depends
on the values read it on the host and refuse to run inside a jitted function; bad arguments raise naming what is wrong."""
import math
import numpy as np
import pytest
import torch
from lucidgrad import Tensor, dtypes, jit, JitError
from test_indexing import compare

RNG = np.random.default_rng(12)
def r(*shape, dtype=np.float32): return RNG.standard_normal(shape).astype(dtype)
def lg(t) -> bool: return isinstance(t, Tensor)
def same(got, want):
  """got (a lucidgrad Tensor) equals the torch tensor want: shape, dtype and values (NaN where want has NaN)."""
  assert got.shape == tuple(want.shape), f"shape {got.shape}, torch {tuple(want.shape)}"
  assert got.dtype.name == str(want.dtype).removeprefix("torch."), f"dtype {got.dtype}, torch {want.dtype}"
  np.testing.assert_array_equal(got.numpy(), want.numpy())

# ---------------------------------------------------------------- diagonals

@pytest.mark.parametrize("shape,offset,dims,layout", [((4, 5), 0, (0, 1), "contig"), ((4, 5), 2, (0, 1), "permuted"),
                                                     ((3, 4, 5), -2, (2, 0), "sliced"), ((3, 4, 5), 1, (-1, -2), "flipped"),
                                                     ((4, 5), 6, (0, 1), "contig"), ((4, 5), -4, (1, 0), "contig")], ids=str)
def test_diagonal(shape, offset, dims, layout):
  compare(lambda t: t.diagonal(offset, *dims), r(*shape), layout)

@pytest.mark.parametrize("shape,offset", [((5,), 0), ((5,), 2), ((4,), -3), ((4, 5), 1), ((4, 5), -2), ((3, 3), 9), ((0,), 1)], ids=str)
def test_diag(shape, offset):
  compare(lambda t: t.diag(offset), r(*shape), "flipped" if len(shape) == 2 else "contig")

@pytest.mark.parametrize("shape,offset,dim1,dim2", [((2, 3), 0, -2, -1), ((2, 3), 1, 0, 2), ((3, 2, 4), -2, 3, 1)], ids=str)
def test_diag_embed(shape, offset, dim1, dim2):
  compare(lambda t: t.diag_embed(offset, dim1, dim2), r(*shape), "permuted")

def test_trace_values_gradient_and_dtypes():
  compare(lambda t: t.trace(), r(4, 6), "sliced")
  a = RNG.integers(-9, 9, (5, 3)).astype(np.int32)
  same(Tensor(a).trace(), torch.tensor(a).trace())
  same(Tensor(a > 0).diagonal(-1), torch.tensor(a > 0).diagonal(-1))

def test_diagonal_errors_name_the_argument():
  with pytest.raises(ValueError, match=r"dim1 and dim2 name the same dim 1 \(shape \(3, 4\)\)"): Tensor(r(3, 4)).diagonal(0, 1, -1)
  with pytest.raises(ValueError, match=r"diagonal: needs at least 2 dims, got shape \(3,\)"): Tensor(r(3)).diagonal()
  with pytest.raises(IndexError, match="axis 2 is out of range"): Tensor(r(3, 4)).diagonal(0, 0, 2)
  with pytest.raises(ValueError, match=r"diag: needs a 1-D or 2-D tensor, got shape \(2, 2, 2\)"): Tensor(r(2, 2, 2)).diag()
  with pytest.raises(ValueError, match=r"diag_embed: dim1 and dim2 name the same dim 2"): Tensor(r(3, 4)).diag_embed(0, 2, -1)
  with pytest.raises(ValueError, match=r"trace: needs a 2-D tensor, got shape \(2, 2, 2\)"): Tensor(r(2, 2, 2)).trace()

@pytest.mark.parametrize("row,col,offset", [(4, 3, 0), (3, 5, -1), (4, 4, 2), (3, 5, -4), (4, 3, 10), (0, 3, 0)], ids=str)
def test_tril_triu_indices(row, col, offset):
  same(Tensor.tril_indices(row, col, offset), torch.tril_indices(row, col, offset))
  same(Tensor.triu_indices(row, col, offset), torch.triu_indices(row, col, offset))

def test_tril_indices_dtype_and_errors():
  same(Tensor.tril_indices(3, 3, dtype=dtypes.int32), torch.tril_indices(3, 3, dtype=torch.int32))
  with pytest.raises(ValueError, match="row and col must be >= 0, got row=-1, col=3"): Tensor.tril_indices(-1, 3)
  with pytest.raises(TypeError, match="triu_indices: dtype must be an integer dtype, got dtypes.float32"): Tensor.triu_indices(2, 2, dtype=dtypes.float32)

# ---------------------------------------------------------------- cross, kron, rot90, movedim, flatten

@pytest.mark.parametrize("sa,sb,dim", [((3, 4), (3, 4), None), ((2, 5, 3), (1, 5, 3), -1), ((4, 3, 3), (1, 3, 1), 1)], ids=str)
def test_cross(sa, sb, dim):
  compare(lambda a, b: a.cross(b, dim) if lg(a) else torch.cross(a, b, dim=dim if dim is not None else sa.index(3)), [r(*sa), r(*sb)])

def test_cross_ints_and_errors():
  a, b = RNG.integers(-5, 5, (2, 3)).astype(np.int32), RNG.integers(-5, 5, (2, 3)).astype(np.int32)
  same(Tensor(a).cross(Tensor(b), dim=1), torch.cross(torch.tensor(a), torch.tensor(b), dim=1))
  with pytest.raises(ValueError, match=r"cross: dim 0 has size 2, not 3 \(shapes \(2, 3\) and \(2, 3\)\)"): Tensor(a).cross(Tensor(b), dim=0)
  with pytest.raises(ValueError, match=r"no dim of size 3 in the broadcast shape \(2, 4\)"): Tensor(r(2, 4)).cross(Tensor(r(2, 4)))
  with pytest.raises(ValueError, match=r"shapes \(2, 3\) and \(4, 3\) do not broadcast"): Tensor(a).cross(Tensor(r(4, 3)))

@pytest.mark.parametrize("sa,sb", [((2, 3), (3, 2)), ((2,), (2, 2, 3)), ((), (3,))], ids=str)
def test_kron(sa, sb):
  compare(lambda a, b: a.kron(b), [r(*sa), r(*sb)], "contig" if len(sa) < 2 else "permuted")

def test_kron_ints():
  a, b = RNG.integers(-5, 5, (2, 2)), RNG.integers(-5, 5, (3, 1))
  same(Tensor(a).kron(Tensor(b)), torch.kron(torch.tensor(a), torch.tensor(b)))

@pytest.mark.parametrize("k,dims", [(1, (0, 1)), (2, (1, 2)), (3, (2, 0)), (-1, (0, -1)), (4, (0, 1))], ids=str)
def test_rot90(k, dims):
  compare(lambda t: t.rot90(k, dims), r(2, 3, 4), "sliced")

def test_rot90_errors():
  with pytest.raises(ValueError, match=r"rot90: dims must name 2 dims, got \(0,\)"): Tensor(r(2, 3)).rot90(1, (0,))
  with pytest.raises(ValueError, match=r"dims \(1, -1\) must be two different dims"): Tensor(r(2, 3)).rot90(1, (1, -1))
  with pytest.raises(ValueError, match=r"needs at least 2 dims, got shape \(3,\)"): Tensor(r(3)).rot90()

@pytest.mark.parametrize("src,dst", [(0, -1), ((0, 1), (2, 0)), ([-1], [1]), ((), ())], ids=str)
def test_movedim(src, dst):
  compare(lambda t: t.movedim(src, dst), r(2, 3, 4), "flipped")
  compare(lambda t: t.moveaxis(src, dst), r(2, 3, 4))

def test_movedim_errors():
  with pytest.raises(ValueError, match=r"source \(0, 1\) and destination \(1,\) must name as many dims"): Tensor(r(2, 3)).movedim((0, 1), (1,))
  with pytest.raises(ValueError, match=r"repeated dim in destination \(1, -1\) \(shape \(2, 3\)\)"): Tensor(r(2, 3)).movedim((0, 1), (1, -1))

@pytest.mark.parametrize("shape,start,end", [((2, 3, 4), 0, -1), ((2, 3, 4), 1, 2), ((2, 3, 4), -2, -2), ((), 0, -1), ((2, 0, 3), 0, 1)], ids=str)
def test_flatten(shape, start, end):
  compare(lambda t: t.flatten(start, end), r(*shape), "permuted" if len(shape) else "contig")

@pytest.mark.parametrize("dim,sizes", [(1, (2, 2)), (-1, (-1, 3)), (0, (1, 2, 1))], ids=str)
def test_unflatten(dim, sizes):
  compare(lambda t: t.unflatten(dim, sizes), r(2, 4, 3), "sliced")

# ---------------------------------------------------------------- narrow, repeat_interleave

@pytest.mark.parametrize("dim,start,length", [(0, 1, 2), (-1, -3, 2), (1, 4, 0), (1, 0, 4)], ids=str)
def test_narrow(dim, start, length):
  compare(lambda t: t.narrow(dim, start, length), r(3, 4), "permuted")

def test_narrow_with_a_tensor_start_gathers_and_runs_in_a_jit():
  compare(lambda t: t.narrow(1, Tensor(-3) if lg(t) else torch.tensor(-3), 2), r(3, 5), "sliced")
  x = r(4, 6)
  f = jit(lambda t, s: t.narrow(1, s, 3) * 2)
  for s in (0, 2, -4, 3): np.testing.assert_array_equal(f(Tensor(x), Tensor(s)).numpy(), torch.tensor(x).narrow(1, s, 3).numpy() * 2)

def test_narrow_errors():
  t = Tensor(r(3, 5))
  with pytest.raises(IndexError, match=r"narrow: start -6 is out of range \[-5, 5\] for dim 1 of shape \(3, 5\)"): t.narrow(1, -6, 0)
  with pytest.raises(ValueError, match=r"start 3 \+ length 3 exceeds the size 5 of dim 1"): t.narrow(-1, 3, 3)
  with pytest.raises(ValueError, match="length must be an int >= 0, got -1"): t.narrow(0, 0, -1)
  with pytest.raises(ValueError, match="narrow: needs at least 1 dim, got a 0-d tensor"): Tensor(1.0).narrow(0, 0, 1)
  with pytest.raises(TypeError, match=r"a tensor start must be a 0-d integer tensor, got shape \(1,\)"): t.narrow(0, Tensor([1]), 1)
  out = t.narrow(1, Tensor(4), 2)  # checked on the device: raises at the next read
  with pytest.raises(IndexError, match=r"narrow start \(dim 1 of shape \(3, 5\), length 2\): index 4 is out of range"): out.numpy()

@pytest.mark.parametrize("repeats,dim", [(2, None), ([1, 0, 3], 1), ("t", 1), ("t", -2), ("t1", None)], ids=str)
def test_repeat_interleave(repeats, dim):
  x = r(4, 3)
  n = x.size if dim is None else x.shape[dim]
  counts = RNG.integers(0, 4, n) if repeats == "t" else np.array([3]) if repeats == "t1" else None
  conv = lambda t: repeats if counts is None else (Tensor(counts) if lg(t) else torch.tensor(counts))
  compare(lambda t: t.repeat_interleave(conv(t), dim), x, "permuted",
          fn_torch=lambda t: t.repeat_interleave(torch.tensor(repeats) if isinstance(repeats, list) else conv(t), dim))

def test_repeat_interleave_with_output_size_reads_nothing_and_runs_in_a_jit():
  x, counts = r(5, 2), np.array([2, 0, 1, 3, 1])
  want = torch.tensor(x).repeat_interleave(torch.tensor(counts), 0)
  f = jit(lambda t, c: t.repeat_interleave(c, 0, output_size=7) + 1)
  for _ in range(3): np.testing.assert_array_equal(f(Tensor(x), Tensor(counts)).numpy(), want.numpy() + 1)
  same(Tensor(counts).repeat_interleave(), torch.repeat_interleave(torch.tensor(counts)))  # torch.repeat_interleave(counts)
  out = Tensor(x).repeat_interleave(Tensor(counts), 0, output_size=6)  # wrong: the sum is checked on the device
  with pytest.raises(IndexError, match=r"the repeats minus output_size=6, which must be 0"): out.numpy()

def test_repeat_interleave_errors_and_empty():
  t = Tensor(r(3, 2))
  same(Tensor(np.zeros((0, 2), np.float32)).repeat_interleave(Tensor(np.zeros(0, np.int64)), 0), torch.zeros(0, 2).repeat_interleave(torch.zeros(0, dtype=torch.int64), 0))
  same(t.repeat_interleave(Tensor([0, 0, 0]), 0), torch.zeros(0, 2))
  with pytest.raises(ValueError, match="repeats must be >= 0, got a count of -1"): t.repeat_interleave(Tensor([1, -1, 2]), 0)
  with pytest.raises(ValueError, match=r"repeats of shape \(2,\) for a dim of size 3"): t.repeat_interleave(Tensor([1, 2]), 0)
  with pytest.raises(TypeError, match="repeats must be an integer tensor, got dtypes.float32"): t.repeat_interleave(Tensor([1.0, 2.0, 1.0]), 0)
  with pytest.raises(ValueError, match="output_size=5, but 6 elements repeated 2 times give 12"): t.repeat_interleave(2, output_size=5)

# ---------------------------------------------------------------- cdist

@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, 0.5, math.inf, 0.0], ids=str)
def test_cdist(p):
  a, b = r(2, 4, 3, dtype=np.float64), r(5, 3, dtype=np.float64)
  compare(lambda x, y: x.cdist(y, p) if lg(x) else torch.cdist(x, y, p), [a, b], "permuted", grad=p != 0, rtol=1e-9, atol=1e-9)

def test_cdist_zero_distances_ties_and_broadcast_batches():
  a = r(3, 1, 4, 2, dtype=np.float64)
  b = np.stack([np.concatenate([a[0, 0, :2], r(3, 2, dtype=np.float64)]), r(5, 2, dtype=np.float64)])  # zero distances in batch (0, 0)
  for p in (2.0, 0.5):
    compare(lambda x, y: x.cdist(y, p) if lg(x) else torch.cdist(x, y, p), [a, b], rtol=1e-9, atol=1e-9)
  ties = [np.array([[0.0, 0.0], [1.0, 3.0]]), np.array([[1.0, -1.0], [0.0, 0.5]])]  # |diff| ties for the max: each takes the gradient
  compare(lambda x, y: x.cdist(y, math.inf) if lg(x) else torch.cdist(x, y, math.inf), ties)
  same(Tensor(r(2, 0)).cdist(Tensor(r(3, 0)), math.inf), torch.zeros(2, 3))

@pytest.mark.parametrize("mode", ["use_mm_for_euclid_dist_if_necessary", "use_mm_for_euclid_dist", "donot_use_mm_for_euclid_dist"])
def test_cdist_compute_modes_as_torch(mode):
  """p = 2 is a matmul where torch's compute_mode makes it one (here P = 30 > 25): equal rows are then apart by what
  cancels (~1e-8, in torch too, with other digits), hence the atol; their gradient is 0."""
  a = r(30, 3, dtype=np.float64)
  b = np.concatenate([a[:2], r(4, 3, dtype=np.float64)])  # two zero distances
  compare(lambda x, y: x.cdist(y, compute_mode=mode) if lg(x) else torch.cdist(x, y, compute_mode=mode), [a, b], rtol=1e-7, atol=1e-7)

def test_cdist_errors():
  with pytest.raises(ValueError, match="compute_mode must be one of"): Tensor(r(2, 3)).cdist(Tensor(r(2, 3)), compute_mode="mm")
  with pytest.raises(ValueError, match=r"one M, got shapes \(2, 3\) and \(2, 4\)"): Tensor(r(2, 3)).cdist(Tensor(r(2, 4)))
  with pytest.raises(ValueError, match="p must be >= 0, got -1"): Tensor(r(2, 3)).cdist(Tensor(r(2, 3)), -1)
  with pytest.raises(TypeError, match="cdist: needs float tensors, got dtypes.int64"): Tensor([[1, 2]]).cdist(Tensor(r(1, 2)))
  with pytest.raises(ValueError, match=r"batch dims of shapes \(2, 1, 3\) and \(4, 1, 3\) do not broadcast"): Tensor(r(2, 1, 3)).cdist(Tensor(r(4, 1, 3)))

# ---------------------------------------------------------------- bincount, histc

def test_bincount():
  x = RNG.integers(0, 6, 40)
  same(Tensor(x).bincount(), torch.tensor(x).bincount())
  same(Tensor(x[::3].astype(np.int32)).bincount(minlength=9), torch.tensor(x[::3].astype(np.int32)).bincount(minlength=9))
  for w in (r(40), r(40, dtype=np.float64), r(40, dtype=np.float16), RNG.integers(-3, 3, 40)):
    got, want = Tensor(x).bincount(Tensor(w)), torch.tensor(x).bincount(torch.tensor(w))
    assert got.dtype.name == str(want.dtype).removeprefix("torch.")
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
  same(Tensor(np.zeros(0, np.int64)).bincount(minlength=3), torch.tensor([], dtype=torch.int64).bincount(minlength=3))

def test_bincount_errors():
  with pytest.raises(ValueError, match="bincount: the values must be >= 0, got -2"): Tensor([1, -2, 3]).bincount()
  with pytest.raises(TypeError, match=r"needs a 1-D int tensor, got shape \(2, 2\)"): Tensor([[1, 2], [3, 4]]).bincount()
  with pytest.raises(TypeError, match="needs a 1-D int tensor, got shape \\(2,\\), dtypes.float32"): Tensor([1.0, 2.0]).bincount()
  with pytest.raises(ValueError, match=r"weights must have the input's shape \(3,\), got \(2,\)"): Tensor([1, 2, 3]).bincount(Tensor([1.0, 2.0]))
  with pytest.raises(ValueError, match="minlength must be >= 0, got -1"): Tensor([1]).bincount(minlength=-1)

@pytest.mark.parametrize("values,bins,lo,hi", [("randn", 7, 0, 0), ("randn", 5, -1.0, 0.5), ("edges", 5, 0, 5), ("const", 4, 0, 0), ("randn64", 3, -2, 2)], ids=str)
def test_histc(values, bins, lo, hi):
  x = {"randn": r(6, 7), "randn64": r(50, dtype=np.float64), "const": np.full(3, 2.0, np.float32),
       "edges": np.array([0.0, 1.0, np.nan, 3.0, 5.0, 5.5, -0.1, 2.0, 4.0], np.float32)}[values]
  same(Tensor(x).histc(bins, lo, hi), torch.tensor(x).histc(bins, lo, hi))

def test_histc_non_contiguous_and_errors():
  x = r(5, 6)
  same(Tensor(x).T[1:].histc(6, -1, 1), torch.tensor(x).T[1:].histc(6, -1, 1))
  with pytest.raises(ValueError, match=r"range \[0.0, inf\] of the values is not finite"): Tensor([0.0, math.inf]).histc(2)
  with pytest.raises(ValueError, match="max must be >= min, got min=2, max=1"): Tensor([0.0]).histc(2, 2, 1)
  with pytest.raises(TypeError, match="histc: needs a float tensor, got dtypes.int64"): Tensor([1, 2]).histc(2)
  with pytest.raises(ValueError, match="bins must be a positive int, got 0"): Tensor([1.0]).histc(0)

# ---------------------------------------------------------------- searchsorted, bucketize

@pytest.mark.parametrize("kind", ["1d", "nd", "ties", "nan", "empty", "int32_sorter"])
def test_searchsorted(kind):
  if kind == "1d": seq, vals = np.sort(r(9)), r(3, 4)
  elif kind == "nd": seq, vals = np.sort(r(2, 3, 6), -1), r(2, 3, 4)
  elif kind == "ties": seq, vals = np.array([1, 2, 2, 2, 5, 5, 7]), np.array([[0, 1, 2], [5, 6, 8]])
  elif kind == "nan": seq, vals = np.array([1.0, 2.0, np.nan, np.nan]), np.array([np.nan, 2.0, 0.5, 9.0])
  elif kind == "empty": seq, vals = np.zeros(0, np.float32), r(3)
  else: seq, vals = RNG.integers(0, 20, 8).astype(np.int32), RNG.integers(-2, 22, 6).astype(np.int32)
  sorter = np.argsort(seq, kind="stable") if kind == "int32_sorter" else None
  for right in (False, True):
    kw = dict(right=right, out_int32=kind == "int32_sorter")
    got = Tensor.searchsorted(Tensor(seq), Tensor(vals), sorter=None if sorter is None else Tensor(sorter), **kw)
    same(got, torch.searchsorted(torch.tensor(seq), torch.tensor(vals), sorter=None if sorter is None else torch.tensor(sorter), **kw))
  same(Tensor(seq).searchsorted(Tensor(vals), side="right"), torch.searchsorted(torch.tensor(seq), torch.tensor(vals), side="right"))

def test_searchsorted_scalar_noncontiguous_and_bucketize():
  seq = np.sort(r(12))
  same(Tensor.searchsorted(Tensor(seq), 0.25), torch.searchsorted(torch.tensor(seq), 0.25))
  for v in (2, 2.5): same(Tensor.searchsorted(Tensor([1, 2, 3]), v, right=True), torch.searchsorted(torch.tensor([1, 2, 3]), v, right=True))
  vals = r(4, 5)
  same(Tensor.searchsorted(Tensor(seq)[::2], Tensor(vals).T), torch.searchsorted(torch.tensor(seq)[::2].contiguous(), torch.tensor(vals).T.contiguous()))
  b = np.array([1, 3, 3, 6])
  x = np.array([[0, 1, 3], [4, 6, 7]])
  for right in (False, True): same(Tensor(x).bucketize(Tensor(b), right=right), torch.bucketize(torch.tensor(x), torch.tensor(b), right=right))

def test_searchsorted_errors():
  s = Tensor(np.sort(r(2, 5), -1))
  with pytest.raises(ValueError, match=r"a sequence of shape \(2, 5\) needs values with its leading dims \(2,\), got shape \(3, 4\)"): s.searchsorted(Tensor(r(3, 4)))
  with pytest.raises(ValueError, match="side='left' and right=True contradict"): s.searchsorted(Tensor(r(2, 4)), right=True, side="left")
  with pytest.raises(ValueError, match="side must be 'left' or 'right', got 'up'"): s.searchsorted(Tensor(r(2, 4)), side="up")
  with pytest.raises(ValueError, match=r"bucketize: boundaries must be a 1-D tensor, got shape \(2, 5\)"): Tensor(r(3)).bucketize(s)

# ---------------------------------------------------------------- masked_select, nonzero, argwhere, unique

@pytest.mark.parametrize("shape,mask_shape,layout", [((3, 4), (3, 4), "permuted"), ((3, 4), (4,), "sliced"), ((4,), (3, 4), "contig"),
                                                    ((), (2,), "contig"), ((2, 3), (2, 3), "empty")], ids=str)
def test_masked_select(shape, mask_shape, layout):
  m = RNG.random(mask_shape) > (1.1 if layout == "empty" else 0.5)
  compare(lambda t: t.masked_select(Tensor(m) if lg(t) else torch.tensor(m)), r(*shape), "contig" if layout == "empty" else layout)

def test_masked_select_ints_and_errors():
  x = RNG.integers(-5, 5, (4, 3)).astype(np.int16)
  same(Tensor(x).masked_select(Tensor(x > 0)), torch.tensor(x).masked_select(torch.tensor(x > 0)))
  with pytest.raises(TypeError, match="the mask must be a bool tensor, got dtypes.int64"): Tensor(x).masked_select(Tensor([1, 0, 1]))
  with pytest.raises(ValueError, match=r"a mask of shape \(2,\) does not broadcast with the tensor's shape \(4, 3\)"): Tensor(x).masked_select(Tensor([True, False]))

@pytest.mark.parametrize("case", ["float_nan", "int_permuted", "bool3d", "zero_d", "zero_d_zero", "empty", "none_true"])
def test_nonzero_and_argwhere(case):
  x = {"float_nan": np.array([[0.0, np.nan, -0.0], [2.0, 0.0, 1e-30]], np.float32), "int_permuted": RNG.integers(-1, 2, (3, 4)).astype(np.int8).T,
       "bool3d": RNG.random((2, 3, 4)) > 0.6, "zero_d": np.array(3.0, np.float32), "zero_d_zero": np.array(0, np.int32),
       "empty": np.zeros((0, 3), np.float32), "none_true": np.zeros((2, 2), np.int64)}[case]
  t, tt = Tensor(x), torch.tensor(x)
  if case == "int_permuted": t, tt = Tensor(np.ascontiguousarray(x.T)).T, torch.tensor(np.ascontiguousarray(x.T)).T
  same(t.nonzero(), tt.nonzero())
  same(t.argwhere(), tt.argwhere())
  got, want = t.nonzero(as_tuple=True), tt.nonzero(as_tuple=True)
  assert len(got) == len(want)
  for g, w in zip(got, want): same(g, w)

@pytest.mark.parametrize("case", ["int32", "int64_offsets", "int64_wide", "float_nan", "bool", "float16", "empty", "one"])
def test_unique(case):
  # 12 values where the case allows: one size of sort kernels for all
  x = {"int32": RNG.integers(-3, 4, (3, 4)).astype(np.int32), "int64_offsets": RNG.integers(10**12, 10**12 + 6, 12),
       "int64_wide": np.array([2**40, -5, 7, 2**40, -5, 0]), "bool": np.array([[True, False], [True, True]]),
       "float_nan": np.array([3.0, np.nan, 1.0, 3.0, np.nan, -2.5, 0.0, -0.0, 1.0, 1.0, 7.0, np.nan], np.float32),
       "float16": r(2, 6).round().astype(np.float16), "empty": np.zeros((0, 2), np.int64), "one": np.array(7.0, np.float32)}[case]
  t, tt = Tensor(x), torch.tensor(x)
  for got, want in zip(t.unique(return_inverse=True, return_counts=True), tt.unique(return_inverse=True, return_counts=True)):
    assert got.shape == tuple(want.shape) and got.dtype.name == str(want.dtype).removeprefix("torch.")
    np.testing.assert_array_equal(got.numpy(), want.numpy())
  same(t.unique(sorted=False), tt.unique(sorted=True))  # sorted either way (torch sorts these too)

def test_unique_over_a_dim_is_not_implemented():
  with pytest.raises(NotImplementedError, match="unique: dim="): Tensor([[1, 2], [1, 2]]).unique(dim=0)

@pytest.mark.parametrize("op", ["masked_select", "nonzero", "argwhere", "unique", "bincount", "repeat_interleave", "histc"])
def test_value_sized_ops_refuse_to_run_in_a_jit(op):
  call = {"masked_select": lambda t: t.masked_select(t > 0), "nonzero": lambda t: t.nonzero(), "argwhere": lambda t: t.argwhere(),
          "unique": lambda t: t.unique(), "bincount": lambda t: t.cast(dtypes.int32).abs().bincount(),
          "repeat_interleave": lambda t: t.repeat_interleave(t.cast(dtypes.int32).abs()), "histc": lambda t: t.histc(4)}[op]
  f = jit(lambda t: call(t) * 1)
  with pytest.raises(JitError, match=rf"{op}.*inside a jitted function \(at .*test_torch_shape.py:\d+\)"): f(Tensor([1.0, -2.0, 3.0]))
