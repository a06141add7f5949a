"""The torch.nn.functional ops issue 12 adds or completes in tensor_nn.py, held to torch on the CPU (float64): losses and
their edge cases, tinygrad's loss names, normalize, softmin, max_unpool, interpolate's modes, F.pad, and convolution and
pooling padding in every form torch (and tinygrad) takes; values, gradients, non-contiguous inputs and the errors."""
import warnings
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lucidgrad import Tensor, dtypes, GlobalCounters, Context
from test_nn_functional import compare, rnd

def ints(seed, shape, hi, ignore=None, every=3):
  t = np.random.default_rng(seed).integers(0, hi, size=shape)
  if ignore is not None: t.reshape(-1)[::every] = ignore
  return t.astype(np.int64)

# ---------------------------------------------------------------- losses

@pytest.mark.parametrize("case", ["all_ignored", "zero_weights", "weighted_spatial_ignore"])
def test_nll_loss_edge_cases_match_torch(case):
  """torch's 'mean' divides by the targets' summed weights: 0 (every target ignored, every weight 0) gives NaN, and the
  gradient is then 0 where nothing counted (NaN where a zero weight met a zero divisor, as torch's)."""
  if case == "all_ignored": x, t, w, kw = rnd(1, 4, 5), np.full(4, 2, np.int64), None, {"ignore_index": 2}
  elif case == "zero_weights": x, t, w, kw = rnd(2, 4, 5), ints(3, (4,), 5), np.zeros(5, np.float32), {}
  else: x, t, w, kw = rnd(4, 2, 4, 3, 5), ints(5, (2, 3, 4), 5, ignore=1), np.abs(rnd(6, 5)) + 0.1, {"ignore_index": 1}
  # a non-contiguous input: the classes of a (N, d2, d1, C) tensor moved to axis 1 as a view
  perm = (0, 3, 2, 1) if x.ndim == 4 else (0, 1)
  compare(lambda x, t, w: x.permute(*perm).log_softmax(1).nll_loss(t, w, **kw),
          lambda x, t, w: F.nll_loss(F.log_softmax(x.permute(*perm), 1), t, w, **kw), [x, t, w], grads=[0])

def test_nll_loss_all_ignored_is_nan_and_sum_is_zero():
  x, t = Tensor(rnd(7, 3, 4)), Tensor(np.full(3, -100, np.int64))
  assert np.isnan(x.nll_loss(t).item()) and np.isnan(F.nll_loss(torch.tensor(rnd(7, 3, 4)), torch.tensor(t.numpy())).item())
  assert x.nll_loss(t, reduction="sum").item() == 0.0
  assert x.nll_loss(t, reduction="none").dtype == dtypes.float32

def test_class_target_errors_name_the_problem():
  x = Tensor(rnd(8, 4, 5))
  with pytest.raises(TypeError, match="nll_loss: class-index targets must be integers, got dtypes.float32"): x.nll_loss(Tensor(rnd(9, 4)))
  with pytest.raises(TypeError, match="nll_loss: class-index targets must be integers, got dtypes.bool"): x.nll_loss(Tensor(np.zeros(4, bool)))
  with pytest.raises(ValueError, match=r"nll_loss: target shape \(4, 2\) does not match input shape \(4, 5\)"): x.nll_loss(Tensor(np.zeros((4, 2), np.int64)))
  with pytest.raises(ValueError, match="nll_loss: reduction must be 'none', 'mean' or 'sum', got 'avg'"): x.nll_loss(Tensor(np.zeros(4, np.int64)), reduction="avg")
  with pytest.raises(IndexError, match="nll_loss target class: index 5 is out of range for size 5"): x.nll_loss(Tensor(np.array([0, 1, 5, 2]))).numpy()
  with pytest.raises(ValueError, match=r"binary_cross_entropy: target shape \(4, 1\) must be the input's shape \(4, 5\)"):
    x.sigmoid().binary_cross_entropy(Tensor(rnd(10, 4, 1)))
  with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: target shape \(5,\)"): x.binary_cross_entropy_with_logits(Tensor(rnd(10, 5)))
  with pytest.raises(ValueError, match="kl_div: reduction must be 'none', 'batchmean', 'mean' or 'sum', got 'avg'"): x.kl_div(x, reduction="avg")
  with pytest.raises(TypeError, match="sparse_categorical_crossentropy: Y must hold integer class indices, got dtypes.float32"):
    x.sparse_categorical_crossentropy(Tensor(rnd(11, 4)))

def test_binary_cross_entropy_with_logits_pos_weight_per_channel():
  """pos_weight (C, 1, 1) weighs each channel's positives of an (N, C, H, W) input, weight broadcasts, logits of 90 stay finite."""
  x = rnd(12, 2, 3, 4, 5, scale=3); x[0, 0, 0, :2] = [90.0, -90.0]
  t = (rnd(13, 2, 3, 5, 4) > 0).astype(np.float32)
  compare(lambda x, t, w, p: x.binary_cross_entropy_with_logits(t.transpose(2, 3), w, pos_weight=p),
          lambda x, t, w, p: F.binary_cross_entropy_with_logits(x, t.transpose(2, 3), w, pos_weight=p),
          [x, t, np.abs(rnd(14, 4, 1)), np.abs(rnd(15, 3, 1, 1)) + 0.5], grads=[0, 1])

def test_binary_cross_entropy_with_zero_weights_and_saturated_probabilities():
  """torch's gradients: (p - t) / max(p (1 - p), 1e-12) for p, finite at 0 and 1; -logit(p) for the target, NaN where a
  zero weight meets an infinite one."""
  p = np.array([[0.0, 1.0, 0.3], [1.0, 0.5, 1e-30]], np.float32)
  compare(lambda x, t, w: x.binary_cross_entropy(t, w), lambda x, t, w: F.binary_cross_entropy(x, t, w),
          [p, np.array([[1.0, 0.0, 0.2], [1.0, 0.5, 1.0]], np.float32), np.array([0.0, 0.0, 2.0], np.float32)], grads=[0, 1])
  compare(lambda x, t: x.binary_cross_entropy(t, reduction="sum"), lambda x, t: F.binary_cross_entropy(x, t, reduction="sum"),
          [np.array([0.0, 1.0, 1.0, 0.0], np.float32), np.array([1.0, 0.0, 1.0, 0.0], np.float32)], grads=[0])

@pytest.mark.parametrize("name,kw", [("huber_loss", {"delta": 0.5, "reduction": "sum"}), ("smooth_l1_loss", {"beta": 0.5})], ids=str)
def test_huber_and_smooth_l1_at_the_seam_on_views(name, kw):
  """differences exactly at delta/beta (the seam between the square and the line) and non-contiguous operands."""
  x = rnd(16, 5, 4); t = x.copy(); t[0] = x[0] - 0.5; t[1] = x[1] + 0.5
  compare(lambda x, t: getattr(x.T, name)(t.T, **kw), lambda x, t: getattr(F, name)(x.T, t.T, **kw), [x, t])

@pytest.mark.parametrize("name,red", [("mse_loss", "mean"), ("l1_loss", "mean"), ("huber_loss", "mean"), ("mse_loss", "none")])
def test_regression_losses_with_a_weight(name, red):
  """torch's 'mean' of a weighted mse_loss / l1_loss is sum(w loss) / sum(w); of a weighted huber_loss the plain mean."""
  compare(lambda x, t, w: getattr(x, name)(t, reduction=red, weight=w), lambda x, t, w: getattr(F, name)(x, t, reduction=red, weight=w),
          [rnd(53, 3, 4, scale=2), rnd(54, 3, 4), np.abs(rnd(55, 3, 4))], grads=[0, 1])
  with pytest.raises(ValueError, match=rf"{name}: weight shape \(4,\) must be the input's shape \(3, 4\)"): getattr(Tensor(rnd(53, 3, 4)), name)(Tensor(rnd(54, 3, 4)), weight=Tensor(rnd(55, 4)))

# ---------------------------------------------------------------- tinygrad's loss names

@pytest.mark.parametrize("xs,ii,ls,red", [((6, 4), -1, 0.0, "mean"), ((3, 5, 4), 2, 0.1, "mean"), ((3, 5, 4), -1, 0.2, "none"), ((4,), -1, 0.0, "sum")], ids=str)
def test_sparse_categorical_crossentropy_is_cross_entropy_with_classes_last(xs, ii, ls, red):
  t = ints(17, xs[:-1], xs[-1], ignore=ii if len(xs) > 1 else None)
  mv = (lambda x: x.permute(0, x.ndim - 1, *range(1, x.ndim - 1))) if len(xs) > 1 else (lambda x: x)
  compare(lambda x, t: x.sparse_categorical_crossentropy(t, ignore_index=ii, label_smoothing=ls, reduction=red),
          lambda x, t: F.cross_entropy(mv(x), t, ignore_index=ii, label_smoothing=ls, reduction=red), [rnd(18, *xs, scale=2), t], grads=[0])

def test_tinygrad_binary_crossentropy_names():
  p, t, w = 1 / (1 + np.exp(-rnd(19, 3, 4))), (rnd(20, 3, 4) > 0).astype(np.float32), np.abs(rnd(21, 4))
  compare(lambda x, t: x.binary_crossentropy(t), lambda x, t: F.binary_cross_entropy(x, t), [p.astype(np.float32), t])
  compare(lambda x, t, w: x.binary_crossentropy_logits(t, reduction="sum", pos_weight=w),
          lambda x, t, w: F.binary_cross_entropy_with_logits(x, t, reduction="sum", pos_weight=w), [rnd(22, 3, 4, scale=3), t, w], grads=[0, 1])

# ---------------------------------------------------------------- normalize, softmin

@pytest.mark.parametrize("p,dim", [(2.0, 1), (1.0, -1), (3.0, (1, 2)), (float("inf"), 0)], ids=str)
def test_normalize_matches_torch_with_a_zero_vector(p, dim):
  x = rnd(23, 3, 4, 5); x[1, 2] = 0; x[:, 1, 3] = 0  # zero vectors along dims 2 and 0: divided by eps, not NaN
  compare(lambda x: x.transpose(1, 2).normalize(p, dim), lambda x: F.normalize(x.transpose(1, 2), p, dim), [x], rtol=1e-4)

def test_normalize_eps_and_1d():
  compare(lambda x: x.normalize(dim=0, eps=1.0), lambda x: F.normalize(x, dim=0, eps=1.0), [rnd(24, 6, scale=0.1)])
  with pytest.raises(IndexError, match="out of range"): Tensor(rnd(24, 6)).normalize()  # dim=1 of a 1-d tensor, as torch

@pytest.mark.parametrize("dim", [0, -1])
def test_softmin_matches_torch(dim):
  compare(lambda x: x.T.softmin(dim), lambda x: F.softmin(x.T, dim), [rnd(25, 4, 6, scale=3)])

def test_softmin_implicit_dim_and_dtype():
  x = rnd(26, 2, 3, 4)
  with pytest.warns(UserWarning, match="implicit dim"): out = Tensor(x).softmin()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    np.testing.assert_allclose(out.numpy(), F.softmin(torch.tensor(x)).numpy(), rtol=1e-5)  # 3-d: dim 0, as torch's legacy rule
  y = Tensor(x).softmin(1, dtype=dtypes.float64)
  assert y.dtype == dtypes.float64
  np.testing.assert_allclose(y.numpy(), F.softmin(torch.tensor(x), 1, dtype=torch.float64).numpy(), rtol=1e-6)

# ---------------------------------------------------------------- max_unpool

UNPOOL = [  # pooling dims, input shape, kernel, stride, padding, output_size
  (1, (2, 3, 9), 3, 2, 1, None),          # overlapping windows: one maximum can win two of them
  (2, (1, 2, 7, 6), 2, None, 0, (7, 6)),  # the odd row torch's default size drops, given back by output_size
  (2, (2, 1, 6, 7), (3, 2), (2, 1), (1, 0), (6, 7)),
  (3, (1, 2, 4, 5, 4), 2, 2, (1, 0, 1), (1, 2, 4, 5, 4)),  # output_size with the batch and channel dims
]

@pytest.mark.parametrize("n,xs,k,s,p,osz", UNPOOL, ids=str)
def test_max_unpool_of_max_pool_matches_torch(n, xs, k, s, p, osz):
  pool, unpool = f"max_pool{n}d", f"max_unpool{n}d"
  def lg(x):
    v, i = getattr(x, pool)(k, s, p, return_indices=True)
    return getattr(v, unpool)(i, k, s, p, osz)
  def th(x):
    v, i = getattr(F, pool)(x, k, s, p, return_indices=True)
    return getattr(F, unpool)(v, i, k, s, p, osz)
  compare(lg, th, [rnd(27, *xs)])

def test_max_unpool_gradient_reads_every_index_as_torch():
  """Values unpooled at given indices, one index twice: both inputs get the output's gradient there (a gather). The two
  values written to one place are equal: which write wins is undefined (torch's docs; a race on a GPU)."""
  idx = np.array([[[[0, 4], [4, 8]], [[2, 3], [7, 6]]]], np.int64)  # (1, 2, 2, 2) into (1, 2, 3, 3)
  v = rnd(28, 1, 2, 2, 2)
  v[0, 0, 1, 0] = v[0, 0, 0, 1]  # the two inputs index 4 names (transposed)
  compare(lambda v, i: v.transpose(2, 3).max_unpool2d(i, 2, 1), lambda v, i: F.max_unpool2d(v.transpose(2, 3), i, 2, 1), [v, idx])

def test_max_unpool_is_a_direct_scatter():
  v, i = Tensor(rnd(29, 2, 8, 16, 16)).max_pool2d(2, return_indices=True)
  v, i = v.realize(), i.realize()
  GlobalCounters.reset()
  with Context(CHECK_INDEX=0): (v.max_unpool2d(i, 2) * 2).realize()  # a device's index check (no host copy there) is a kernel of its own
  # the zeros, one scatter over the input, the consumer; no compare of output positions with indices
  assert GlobalCounters.kernel_count <= 3 and GlobalCounters.global_ops == 2 * 8 * 16 * 16

def test_max_unpool_errors():
  v, i = Tensor(rnd(30, 1, 2, 3, 3)), Tensor(np.zeros((1, 2, 3, 3), np.int64))
  with pytest.raises(ValueError, match=r"max_unpool2d: indices of shape \(1, 2, 3\) must have the input's shape \(1, 2, 3, 3\)"): v.max_unpool2d(i[..., 0], 2)
  with pytest.raises(TypeError, match="max_unpool2d: indices must be an integer Tensor"): v.max_unpool2d(v, 2)
  with pytest.raises(ValueError, match=r"max_unpool2d: output_size \(9, 6\) must be within a stride \(2, 2\) of the default size \(6, 6\)"):
    v.max_unpool2d(i, 2, output_size=(9, 6))
  with pytest.raises(ValueError, match="max_unpool1d: output_size must have 1"): v[0].max_unpool1d(i[0], 2, output_size=(1, 2))
  with pytest.raises(IndexError, match="max_unpool2d index: index 36 is out of range for size 36"): v.max_unpool2d(i + 36, 2).numpy()

# ---------------------------------------------------------------- interpolate

INTERP = [  # mode, input shape, kwargs
  ("bicubic", (1, 2, 5, 7), {"size": (9, 4)}),
  ("bicubic", (2, 1, 4, 6), {"scale_factor": 1.7}),
  ("bicubic", (1, 2, 6, 5), {"scale_factor": (0.6, 2.5), "align_corners": True}),
  ("bicubic", (1, 1, 5, 4), {"scale_factor": 2.3, "recompute_scale_factor": True}),
  ("bilinear", (1, 2, 5, 6), {"scale_factor": (1.75, 0.8), "align_corners": False}),
  ("bilinear", (2, 1, 4, 5), {"size": (7, 9), "align_corners": True}),
  ("trilinear", (1, 1, 3, 4, 2), {"scale_factor": (1.5, 0.75, 2.2)}),
  ("area", (1, 2, 7, 9), {"size": (3, 4)}),
  ("area", (2, 2, 8), {"scale_factor": 0.6}),
  ("area", (1, 1, 4, 6, 6), {"scale_factor": 0.5}),
  ("nearest", (1, 2, 3, 4, 3), {"scale_factor": (1.5, 0.5, 2.0)}),
]

@pytest.mark.parametrize("mode,shape,kw", INTERP, ids=str)
def test_interpolate_matches_torch(mode, shape, kw):
  """on a non-contiguous view: the last two axes swapped (the input is given with them swapped)."""
  x = rnd(31, *shape[:-2], shape[-1], shape[-2])
  compare(lambda x: x.transpose(-1, -2).interpolate(mode=mode, **kw), lambda x: F.interpolate(x.transpose(-1, -2), mode=mode, **kw), [x], rtol=1e-4, atol=1e-5)

def test_bicubic_keeps_the_size_by_a_scale_yet_resamples_as_torch():
  """1.3 on 3 is 3 outputs sampled at 1/1.3 spacing (torch copies here only for the linear modes). torch's backward treats
  it as a copy, so only the forward is held to torch."""
  x = rnd(32, 1, 2, 3, 3)
  np.testing.assert_allclose(Tensor(x).interpolate(scale_factor=1.3, mode="bicubic").numpy(),
                             F.interpolate(torch.tensor(x), scale_factor=1.3, mode="bicubic").numpy(), rtol=1e-5, atol=1e-6)

def test_bicubic_in_float64_uses_float64_coordinates():
  x = np.random.default_rng(33).standard_normal((1, 1, 5, 6))
  ref = F.interpolate(torch.tensor(x), scale_factor=1.9, mode="bicubic").numpy()
  out = Tensor(x).interpolate(scale_factor=1.9, mode="bicubic")
  assert out.dtype == dtypes.float64
  np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)

def test_interpolate_errors():
  x = Tensor(rnd(34, 1, 2, 4, 4))
  with pytest.raises(ValueError, match="interpolate: mode must be .* got 'cubic'"): x.interpolate(size=3, mode="cubic")
  with pytest.raises(ValueError, match=r"mode 'bicubic' needs an input of shape \(N, C, \*, \*\), got \(2, 4, 4\)"): x[0].interpolate(size=3, mode="bicubic")
  with pytest.raises(ValueError, match="align_corners only applies to .* not 'area'"): x.interpolate(size=3, mode="area", align_corners=True)
  with pytest.raises(ValueError, match="exactly one of size and scale_factor"): x.interpolate(size=3, scale_factor=2)
  with pytest.raises(ValueError, match="scale_factor must be a positive number"): x.interpolate(scale_factor=-2)
  with pytest.raises(ValueError, match=r"output size \(0, 0\) does not fit"): x.interpolate(scale_factor=0.1, mode="bilinear")
  with pytest.raises(TypeError, match="mode 'bicubic' needs a float tensor, got dtypes.int32"): x.cast(dtypes.int32).interpolate(size=3, mode="bicubic")
  with pytest.raises(NotImplementedError, match="antialias"): x.interpolate(size=3, mode="bilinear", antialias=True)
  with pytest.raises(ValueError, match="spatial sizes of the input must be positive"): Tensor.zeros(1, 1, 0, 3).interpolate(size=(2, 2))

# ---------------------------------------------------------------- F.pad

@pytest.mark.parametrize("pad,mode,value,shape", [((1, 2, 0, 1, 2, 1), "circular", None, (1, 2, 4, 3, 5)), ((2, 1, -1, 1), "reflect", None, (2, 4, 3, 5)),
                                                  ((1, 0, 2, 3, 1, 1), "constant", -2.5, (2, 4, 3, 5)), ((3, 1), "replicate", None, (4, 3, 5))], ids=str)
def test_pad_any_number_of_sides_matches_torch(pad, mode, value, shape):
  kw = {} if value is None else {"value": value}
  compare(lambda x: x.transpose(-1, -3).pad(pad, mode=mode, **kw), lambda x: F.pad(x.transpose(-1, -3), pad, mode=mode, **kw), [rnd(35, *shape)])

def test_pad_errors():
  x = Tensor(rnd(36, 1, 2, 3))
  with pytest.raises(ValueError, match=r"pad: flat padding \(1, 2, 3\) does not fit shape \(1, 2, 3\)"): x.pad((1, 2, 3))
  with pytest.raises(ValueError, match=r"pad: flat padding .* does not fit"): x.pad((1,) * 8)
  with pytest.raises(ValueError, match="reflect padding .* needs at most 2 on dim 2"): x.pad((3, 0), mode="reflect")
  with pytest.raises(ValueError, match="mode must be"): x.pad((1, 1), mode="symmetric")

# ---------------------------------------------------------------- convolution and pooling padding

@pytest.mark.parametrize("n,xs,k,pad,s,d", [(1, (2, 3, 9), 3, (2, 0), 2, 1), (2, (1, 2, 6, 7), (3, 2), (1, 2, 0, 1), 1, (2, 1)),
                                            (3, (1, 2, 4, 5, 4), 2, (1, 0, 0, 1, 1, 0), 1, 1)], ids=str)
def test_conv_padding_per_side_is_a_pad_then_a_conv(n, xs, k, pad, s, d):
  """padding of 2n ints is one per side, last axis first as F.pad orders them (tinygrad's form; torch takes n or 1)."""
  kk = (k,) * n if isinstance(k, int) else k
  lg, th = getattr(Tensor, f"conv{n}d"), getattr(F, f"conv{n}d")
  compare(lambda x, w, b: lg(x, w, b, s, pad, d), lambda x, w, b: th(F.pad(x, pad), w, b, s, 0, d), [rnd(37, *xs), rnd(38, 3, xs[1], *kk), rnd(39, 3)])

@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("n,xs,k,d", [(3, (1, 2, 5, 4, 6), (2, 3, 4), (2, 1, 1)), (1, (2, 2, 9), 4, 3)], ids=str)
def test_conv_padding_same_with_dilation_and_even_kernels(n, xs, k, d):
  kk = (k,) * n if isinstance(k, int) else k
  lg, th = getattr(Tensor, f"conv{n}d"), getattr(F, f"conv{n}d")
  compare(lambda x, w: lg(x, w, padding="same", dilation=d), lambda x, w: th(x, w, padding="same", dilation=d), [rnd(40, *xs), rnd(41, 2, xs[1], *kk)])

def test_conv_transpose_padding_per_side_crops_the_full_output():
  x, w, b = rnd(42, 1, 2, 4, 3), rnd(43, 2, 3, 3, 2), rnd(44, 3)
  pad = (0, 1, 2, 1)  # W: 0 left, 1 right; H: 2 top, 1 bottom
  compare(lambda x, w, b: x.conv_transpose2d(w, b, stride=2, padding=pad, output_padding=1),
          lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, output_padding=1)[..., 2:-1, 0:-1], [x, w, b])

def test_conv_takes_torch_argument_names_and_order():
  x, w, b = rnd(45, 1, 4, 7), rnd(46, 6, 2, 3), rnd(47, 6)
  compare(lambda x, w, b: x.conv1d(weight=w, bias=b, stride=2, padding=1, dilation=2, groups=2),
          lambda x, w, b: F.conv1d(x, w, b, 2, 1, 2, 2), [x, w, b])
  wt = rnd(48, 4, 3, 2, 2, 2)
  compare(lambda x, w: x.conv_transpose3d(weight=w, bias=None, stride=2, padding=1, output_padding=1, groups=1, dilation=1),
          lambda x, w: F.conv_transpose3d(x, w, None, 2, 1, 1, 1, 1), [rnd(49, 1, 4, 2, 3, 2), wt])

@pytest.mark.parametrize("n,xs,k,s,pad", [(2, (1, 2, 6, 7), 3, 2, (1, 0, 0, 1)), (1, (2, 2, 9), 4, 3, (2, 1)), (3, (1, 1, 4, 5, 4), 2, 1, (0, 1, 1, 0, 1, 1))], ids=str)
def test_pool_padding_per_side(n, xs, k, s, pad):
  """max pools pad with -inf, avg pools with zeros that count (count_include_pad) or not."""
  x = rnd(50, *xs)
  compare(lambda x: getattr(x, f"max_pool{n}d")(k, s, pad), lambda x: getattr(F, f"max_pool{n}d")(F.pad(x, pad, value=-np.inf), k, s), [x])
  avg = getattr(F, f"avg_pool{n}d")
  compare(lambda x: getattr(x, f"avg_pool{n}d")(k, s, pad), lambda x: avg(F.pad(x, pad), k, s), [x])
  compare(lambda x: getattr(x, f"avg_pool{n}d")(k, s, pad, count_include_pad=False),
          lambda x: avg(F.pad(x, pad), k, s) / avg(F.pad(torch.ones_like(x), pad), k, s), [x])

def test_padding_errors():
  x, w = Tensor(rnd(51, 1, 2, 6, 6)), Tensor(rnd(52, 3, 2, 3, 3))
  with pytest.raises(ValueError, match=r"conv2d: padding must be an int, a tuple of 2 \(one per spatial axis\) or of 4 \(one per side, last axis first\), got \(1, 1, 1\)"):
    x.conv2d(w, padding=(1, 1, 1))
  with pytest.raises(ValueError, match=r"conv2d: padding must be >= 0, got \(0, -1, 1, 1\)"): x.conv2d(w, padding=(0, -1, 1, 1))
  with pytest.raises(ValueError, match="conv2d: padding must be an int, a tuple, 'same' or 'valid', got 'full'"): x.conv2d(w, padding="full")
  with pytest.raises(ValueError, match="conv_transpose2d: padding must be an int or a tuple .* got 'same'"): x.conv_transpose2d(Tensor(rnd(52, 2, 3, 3, 3)), padding="same")
  with pytest.raises(ValueError, match=r"max_pool2d: padding \(2, 0, 0, 0\) must be at most half of the kernel size \(3, 3\)"): x.max_pool2d(3, padding=(2, 0, 0, 0))
  with pytest.raises(ValueError, match="avg_pool1d: padding must be an int, a tuple of 1 .* or of 2"): x[0].avg_pool1d(3, padding=(1, 1, 1))
