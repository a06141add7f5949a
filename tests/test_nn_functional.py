"""Every functional of tensor_nn.py held to torch.nn.functional on the CPU with the same values: the forward values and
the gradients with respect to every float input, over shapes, strides, paddings, dilations, groups and edge cases;
the kernel counts the fused forms promise; and the errors a user gets for bad arguments."""
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lucidgrad import Tensor, dtypes, GlobalCounters
from conftest import rnd


def compare(lg_fn, th_fn, arrays, grads=None, rtol=2e-4, atol=2e-5, seed=0):
  """lg_fn(*Tensors) against th_fn(*torch tensors): the output, then d(sum(out * g))/d(input) for each index in
  `grads` (default: every float array), g a fixed random cotangent. torch runs in float64."""
  grads = [i for i, a in enumerate(arrays) if a is not None and a.dtype.kind == "f"] if grads is None else grads
  lg = [None if a is None else Tensor(a, requires_grad=i in grads) for i, a in enumerate(arrays)]
  th = [None if a is None else torch.tensor(a.astype(np.float64) if a.dtype.kind == "f" else a, requires_grad=i in grads) for i, a in enumerate(arrays)]
  out_t = th_fn(*th)
  g = rnd(seed + 99, *out_t.shape)
  out = lg_fn(*lg)
  assert out.shape == tuple(out_t.shape), f"shape {out.shape}, torch gives {tuple(out_t.shape)}"
  if grads:
    (out * Tensor(g)).sum().backward()
    (out_t * torch.tensor(g, dtype=out_t.dtype)).sum().backward()
  out.realize(*[lg[i].grad for i in grads])
  np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=rtol, atol=atol, err_msg="forward")
  for i in grads:
    np.testing.assert_allclose(lg[i].grad.numpy(), th[i].grad.numpy(), rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")

def kernels(fn) -> int:
  """The kernels fn() takes to realize, counted after its inputs are realized and after one call has made what a
  process makes once (the device's index-error scalar, at the first index check: a test run alone counted it)."""
  (lambda o: (o if isinstance(o, Tensor) else o[0]).realize())(fn())
  out = fn()
  GlobalCounters.reset()
  (out if isinstance(out, Tensor) else out[0]).realize()
  return GlobalCounters.kernel_count

# ---------------------------------------------------------------- convolution

CONV2D = [  # (N, C, H, W), Cout, kernel, stride, padding, dilation, groups, bias
  ((2, 4, 7, 6), 6, (3, 3), 1, 0, 1, 1, True),
  ((2, 4, 7, 6), 6, (3, 3), 1, 1, 1, 2, False),
  ((1, 3, 9, 8), 4, (3, 2), (2, 1), (1, 0), 1, 1, True),
  ((2, 4, 9, 9), 4, (3, 3), 2, 2, 2, 4, True),      # depthwise, dilated, strided
  ((1, 2, 8, 7), 3, (2, 3), 3, 1, (2, 1), 1, True),  # stride larger than the kernel
  ((2, 3, 6, 6), 2, (3, 3), 1, "same", 1, 1, True),
  ((1, 2, 7, 8), 2, (4, 2), 1, "same", (1, 2), 1, False),  # even kernels: torch puts the odd pad on the right
  ((1, 2, 5, 5), 3, (5, 5), 1, "valid", 1, 1, True),  # the kernel covers the whole input
  ((1, 1, 5, 5), 1, (1, 1), 2, 0, 1, 1, False),
]

@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("xs,co,k,s,p,d,g,bias", CONV2D, ids=str)
def test_conv2d_matches_torch(xs, co, k, s, p, d, g, bias):
  arrays = [rnd(0, *xs), rnd(1, co, xs[1] // g, *k), rnd(2, co) if bias else None]
  compare(lambda x, w, b: x.conv2d(w, b, stride=s, padding=p, dilation=d, groups=g),
          lambda x, w, b: F.conv2d(x, w, b, stride=s, padding=p, dilation=d, groups=g), arrays)

@pytest.mark.parametrize("xs,co,k,s,p,d,g", [((2, 4, 11), 6, 3, 2, 1, 2, 2), ((1, 3, 8), 3, 4, 1, "same", 1, 3), ((3, 2, 5), 1, 1, 1, 0, 1, 1),
                                             ((1, 2, 9), 4, 2, 3, 2, 3, 1)], ids=str)
def test_conv1d_matches_torch(xs, co, k, s, p, d, g):
  arrays = [rnd(3, *xs), rnd(4, co, xs[1] // g, k), rnd(5, co)]
  compare(lambda x, w, b: x.conv1d(w, b, s, p, d, g), lambda x, w, b: F.conv1d(x, w, b, s, p, d, g), arrays)

@pytest.mark.parametrize("xs,co,k,s,p,d,g", [((1, 2, 5, 6, 4), 4, (3, 2, 2), (1, 2, 1), (1, 0, 1), 1, 2), ((2, 1, 4, 5, 5), 2, (2, 3, 3), 2, 1, (1, 2, 1), 1),
                                             ((1, 2, 4, 4, 4), 2, 3, 1, "same", 1, 1)], ids=str)
def test_conv3d_matches_torch(xs, co, k, s, p, d, g):
  k = k if isinstance(k, tuple) else (k,) * 3
  arrays = [rnd(6, *xs), rnd(7, co, xs[1] // g, *k), rnd(8, co)]
  compare(lambda x, w, b: x.conv3d(w, b, s, p, d, g), lambda x, w, b: F.conv3d(x, w, b, s, p, d, g), arrays)

def test_conv2d_unbatched_input():
  compare(lambda x, w: x.conv2d(w, padding=1), lambda x, w: F.conv2d(x, w, padding=1), [rnd(9, 2, 5, 5), rnd(10, 3, 2, 3, 3)])

def test_conv2d_forward_on_realized_input_is_one_kernel():
  x, w, b = Tensor(rnd(11, 2, 4, 8, 8)), Tensor(rnd(12, 8, 2, 3, 3)), Tensor(rnd(13, 8))
  assert kernels(lambda: x.conv2d(w, b, stride=2, padding=1, dilation=1, groups=2)) == 1
  assert kernels(lambda: x.conv2d(w, b, padding="same", dilation=2, groups=2)) == 1

def test_conv_errors_name_the_problem():
  x = Tensor(rnd(14, 1, 3, 6, 6))
  with pytest.raises(ValueError, match=r"conv2d: input has 3 channels but the weight expects 4"): x.conv2d(Tensor(rnd(15, 2, 4, 3, 3)))
  with pytest.raises(ValueError, match=r"input has 3 channels but the weight expects 2 .*groups=2"): x.conv2d(Tensor(rnd(15, 2, 1, 3, 3)), groups=2)
  with pytest.raises(ValueError, match=r"out_channels \(3\) must be divisible by groups \(3\)|divisible"): Tensor(rnd(14, 1, 6, 6, 6)).conv2d(Tensor(rnd(15, 4, 2, 3, 3)), groups=3)
  with pytest.raises(ValueError, match="weight must have 4 dimensions"): x.conv2d(Tensor(rnd(15, 2, 3, 3)))
  with pytest.raises(ValueError, match="padding='same' needs stride 1"): x.conv2d(Tensor(rnd(15, 2, 3, 3, 3)), stride=2, padding="same")
  with pytest.raises(ValueError, match="larger than the padded input"): x.conv2d(Tensor(rnd(15, 2, 3, 7, 7)))
  with pytest.raises(ValueError, match="bias must have shape"): x.conv2d(Tensor(rnd(15, 2, 3, 3, 3)), Tensor(rnd(16, 3)))
  with pytest.raises(ValueError, match="stride must be positive"): x.conv2d(Tensor(rnd(15, 2, 3, 3, 3)), stride=0)
  with pytest.raises(ValueError, match="input must have 3 .* or 4"): Tensor(rnd(14, 3, 6)).conv2d(Tensor(rnd(15, 2, 3, 3, 3)))
  with pytest.raises(ValueError, match="conv_transpose2d: input has 3 channels but the weight expects 2"): x.conv_transpose2d(Tensor(rnd(15, 2, 3, 3, 3)))
  with pytest.raises(ValueError, match="output_padding"): x.conv_transpose2d(Tensor(rnd(15, 3, 2, 3, 3)), stride=2, output_padding=2)

CONVT = [  # input shape, Cout per group, kernel, stride, padding, output_padding, groups, dilation
  ((2, 4, 5), 3, (3,), 2, 1, 1, 2, 1),
  ((1, 2, 6), 2, (4,), 3, 0, 2, 1, 2),
  ((2, 2, 4, 5), 3, (3, 3), 1, 0, 0, 1, 1),
  ((1, 4, 4, 3), 1, (3, 2), (2, 3), (1, 0), (1, 2), 2, 1),
  ((1, 2, 5, 4), 2, (2, 3), 2, 1, 0, 1, (2, 1)),
  ((1, 2, 3, 4, 3), 2, (2, 3, 2), (2, 1, 2), (0, 1, 1), (1, 0, 0), 1, 1),
]

@pytest.mark.parametrize("xs,cg,k,s,p,op,g,d", CONVT, ids=str)
def test_conv_transpose_matches_torch(xs, cg, k, s, p, op, g, d):
  n = len(k)
  arrays = [rnd(17, *xs), rnd(18, xs[1], cg, *k), rnd(19, cg * g)]
  lg = {1: Tensor.conv_transpose1d, 2: Tensor.conv_transpose2d, 3: Tensor.conv_transpose3d}[n]
  th = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]
  compare(lambda x, w, b: lg(x, w, b, s, p, op, g, d), lambda x, w, b: th(x, w, b, s, p, op, g, d), arrays)

def test_window_views_stay_in_bounds_on_the_interpreter():
  # the PYTHON device raises on any out-of-bounds read, so the padded, strided window views must gate every load
  x, w = rnd(92, 1, 2, 5, 5), rnd(93, 2, 1, 3, 3)
  X, W = Tensor(x, device="PYTHON"), Tensor(w, device="PYTHON")
  np.testing.assert_allclose(X.conv2d(W, stride=2, padding=1, groups=2).numpy(), F.conv2d(torch.tensor(x), torch.tensor(w), stride=2, padding=1, groups=2).numpy(), atol=1e-5)
  np.testing.assert_allclose(X.conv_transpose2d(W, stride=2, padding=1, output_padding=1, groups=2).numpy(),
                             F.conv_transpose2d(torch.tensor(x), torch.tensor(w), stride=2, padding=1, output_padding=1, groups=2).numpy(), atol=1e-5)
  out, idx = X.max_pool2d(3, 2, 1, ceil_mode=True, return_indices=True)
  out_t, idx_t = F.max_pool2d(torch.tensor(x), 3, 2, 1, ceil_mode=True, return_indices=True)
  np.testing.assert_array_equal(out.numpy(), out_t.numpy()); np.testing.assert_array_equal(idx.numpy(), idx_t.numpy())

# ---------------------------------------------------------------- pooling

MAXPOOL = [  # input shape, kernel, stride, padding, dilation, ceil_mode
  ((2, 3, 8, 7), 2, None, 0, 1, False),
  ((1, 2, 7, 7), 3, 2, 1, 1, False),
  ((1, 2, 7, 8), (3, 2), (2, 3), (1, 1), (2, 1), True),
  ((1, 1, 6, 6), 3, 2, 0, 1, True),  # ceil_mode adds a last, partial window
  ((2, 5, 9), 4, 3, 2, 1, True),     # unbatched 2-d pooling reads (C, H, W)
]

@pytest.mark.parametrize("xs,k,s,p,d,ceil", MAXPOOL, ids=str)
def test_max_pool2d_matches_torch(xs, k, s, p, d, ceil):
  compare(lambda x: x.max_pool2d(k, s, p, d, ceil), lambda x: F.max_pool2d(x, k, s, p, d, ceil), [rnd(20, *xs)])

@pytest.mark.parametrize("n,xs,k,s,p,d,ceil", [(1, (2, 3, 11), 3, 2, 1, 2, True), (1, (1, 2, 8), 2, None, 0, 1, False),
                                               (3, (1, 2, 5, 6, 4), 2, (1, 2, 2), (1, 0, 1), 1, True), (3, (1, 1, 4, 5, 5), 3, 2, 1, (1, 2, 1), False)], ids=str)
def test_max_pool1d_3d_match_torch(n, xs, k, s, p, d, ceil):
  lg, th = {1: (Tensor.max_pool1d, F.max_pool1d), 3: (Tensor.max_pool3d, F.max_pool3d)}[n]
  compare(lambda x: lg(x, k, s, p, d, ceil), lambda x: th(x, k, s, p, d, ceil), [rnd(21, *xs)])

@pytest.mark.parametrize("n,xs,k,s,p,d,ceil", [(2, (2, 3, 7, 8), 3, 2, 1, 1, True), (2, (1, 2, 6, 6), 2, None, 0, 2, False), (1, (2, 2, 9), 3, 2, 1, 1, False),
                                               (3, (1, 2, 4, 5, 4), 2, 2, 1, 1, True)], ids=str)
def test_max_pool_return_indices_match_torch(n, xs, k, s, p, d, ceil):
  x = rnd(22, *xs)
  flat = x.reshape(-1); flat[1::3] = flat[0::3][:len(flat[1::3])]  # ties inside windows: torch reports the first
  fn = {1: "max_pool1d", 2: "max_pool2d", 3: "max_pool3d"}[n]
  out, idx = getattr(Tensor(x), fn)(k, s, p, d, ceil, return_indices=True)
  out_t, idx_t = getattr(F, fn)(torch.tensor(x), k, s, p, d, ceil, return_indices=True)
  assert idx.dtype == dtypes.int64
  np.testing.assert_array_equal(out.numpy(), out_t.numpy())
  np.testing.assert_array_equal(idx.numpy(), idx_t.numpy())

AVGPOOL = [  # input shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
  ((2, 3, 8, 7), 2, None, 0, False, True, None),
  ((1, 2, 7, 7), 3, 2, 1, False, True, None),
  ((1, 2, 7, 7), 3, 2, 1, False, False, None),
  ((1, 2, 6, 7), (3, 2), (2, 2), (1, 1), True, True, None),
  ((1, 2, 6, 7), (3, 2), (2, 2), (1, 1), True, False, None),
  ((1, 1, 5, 5), 2, 1, 1, False, True, 3),
]

@pytest.mark.parametrize("xs,k,s,p,ceil,cip,div", AVGPOOL, ids=str)
def test_avg_pool2d_matches_torch(xs, k, s, p, ceil, cip, div):
  compare(lambda x: x.avg_pool2d(k, s, p, ceil, cip, div), lambda x: F.avg_pool2d(x, k, s, p, ceil, cip, div), [rnd(23, *xs)])

@pytest.mark.parametrize("n,xs,k,s,p,ceil,cip", [(1, (2, 3, 10), 3, 2, 1, True, False), (1, (2, 3, 10), 4, 3, 2, False, True),
                                                 (3, (1, 2, 5, 4, 6), (2, 3, 2), (2, 1, 2), (1, 1, 0), True, False)], ids=str)
def test_avg_pool1d_3d_match_torch(n, xs, k, s, p, ceil, cip):
  lg, th = {1: (Tensor.avg_pool1d, F.avg_pool1d), 3: (Tensor.avg_pool3d, F.avg_pool3d)}[n]
  compare(lambda x: lg(x, k, s, p, ceil, cip), lambda x: th(x, k, s, p, ceil, cip), [rnd(24, *xs)])

@pytest.mark.parametrize("n,xs,out", [(1, (2, 3, 10), 5), (1, (2, 3, 10), 3), (2, (1, 2, 7, 8), (3, 4)), (2, (1, 2, 6, 5), (None, 2)),
                                      (2, (2, 3, 5, 5), 1), (3, (1, 2, 5, 4, 6), (2, 3, 4))], ids=str)
def test_adaptive_avg_pool_matches_torch(n, xs, out):
  lg, th = {1: (Tensor.adaptive_avg_pool1d, F.adaptive_avg_pool1d), 2: (Tensor.adaptive_avg_pool2d, F.adaptive_avg_pool2d),
            3: (Tensor.adaptive_avg_pool3d, F.adaptive_avg_pool3d)}[n]
  compare(lambda x: lg(x, out), lambda x: th(x, out), [rnd(25, *xs)])

def test_pool_errors():
  x = Tensor(rnd(26, 1, 2, 6, 6))
  with pytest.raises(ValueError, match="padding .* at most half"): x.max_pool2d(2, padding=2)
  with pytest.raises(ValueError, match="larger than the padded input"): x.avg_pool2d(7)
  with pytest.raises(ValueError, match="input must have 3 or 4 dimensions"): Tensor(rnd(26, 6, 6)).max_pool2d(2)
  with pytest.raises(ValueError, match="kernel_size must be an int or 2 ints"): x.max_pool2d((2, 2, 2))

# ---------------------------------------------------------------- normalisation

@pytest.mark.parametrize("xs,affine", [((4, 3), True), ((3, 2, 5), False), ((2, 3, 4, 3), True)], ids=str)
def test_batch_norm_training_matches_torch_and_updates_running_stats(xs, affine):
  C = xs[1]
  rm, rv = rnd(27, C), np.abs(rnd(28, C)) + 0.5
  arrays = [rnd(29, *xs), rnd(30, C) if affine else None, rnd(31, C) if affine else None]
  state = {}
  def lg(x, w, b):
    state["rm"], state["rv"] = Tensor(rm), Tensor(rv)
    return x.batch_norm(state["rm"], state["rv"], w, b, training=True, momentum=0.2, eps=1e-4)
  th_rm, th_rv = torch.tensor(rm, dtype=torch.float64), torch.tensor(rv, dtype=torch.float64)
  compare(lg, lambda x, w, b: F.batch_norm(x, th_rm, th_rv, w, b, training=True, momentum=0.2, eps=1e-4), arrays)
  np.testing.assert_allclose(state["rm"].numpy(), th_rm.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(state["rv"].numpy(), th_rv.numpy(), rtol=1e-5, atol=1e-6)

def test_batch_norm_eval_uses_running_stats():
  rm, rv = rnd(32, 3), np.abs(rnd(33, 3)) + 0.5
  compare(lambda x, m, v, w, b: x.batch_norm(m, v, w, b), lambda x, m, v, w, b: F.batch_norm(x, m, v, w, b),
          [rnd(34, 2, 3, 4), rm, rv, rnd(35, 3), rnd(36, 3)], grads=[0, 3, 4])

def test_batch_norm_running_stats_after_training_step_feed_a_differentiable_eval():
  x, w = Tensor(rnd(37, 4, 3), requires_grad=True), Tensor(rnd(38, 3), requires_grad=True)
  rm, rv = Tensor.zeros(3), Tensor.ones(3)
  (x * w).batch_norm(rm, rv, training=True).sum().backward()
  rm.realize(rv)
  (x * w).batch_norm(rm, rv, training=False).sum().backward()  # the running stats hold no history to differentiate
  assert w.grad is not None

@pytest.mark.parametrize("xs,ns,affine", [((3, 8), (8,), True), ((2, 3, 4, 5), (4, 5), True), ((2, 3, 6), 6, False)], ids=str)
def test_layer_norm_matches_torch(xs, ns, affine):
  nst = (ns,) if isinstance(ns, int) else ns
  arrays = [rnd(39, *xs, scale=3), rnd(40, *nst) if affine else None, rnd(41, *nst) if affine else None]
  compare(lambda x, w, b: x.layer_norm(ns, w, b, eps=1e-5), lambda x, w, b: F.layer_norm(x, nst, w, b, eps=1e-5), arrays)

def test_layer_norm_forward_is_at_most_three_kernels():
  x, w, b = Tensor(rnd(42, 4, 16)), Tensor(rnd(43, 16)), Tensor(rnd(44, 16))
  assert kernels(lambda: x.layer_norm(16, w, b)) <= 3

@pytest.mark.parametrize("xs,g,affine", [((2, 6, 5), 3, True), ((2, 4, 3, 3), 4, True), ((3, 4), 2, False), ((1, 6, 2, 2, 2), 1, True)], ids=str)
def test_group_norm_matches_torch(xs, g, affine):
  arrays = [rnd(45, *xs), rnd(46, xs[1]) if affine else None, rnd(47, xs[1]) if affine else None]
  compare(lambda x, w, b: x.group_norm(g, w, b, eps=1e-5), lambda x, w, b: F.group_norm(x, g, w, b, eps=1e-5), arrays)

@pytest.mark.parametrize("xs,ns,eps,affine", [((3, 8), (8,), None, True), ((2, 3, 4), (3, 4), 1e-3, True), ((2, 5), 5, 1e-6, False)], ids=str)
def test_rms_norm_matches_torch(xs, ns, eps, affine):
  nst = (ns,) if isinstance(ns, int) else ns
  compare(lambda x, w: x.rms_norm(ns, w, eps), lambda x, w: F.rms_norm(x, nst, w, eps), [rnd(48, *xs), rnd(49, *nst) if affine else None])

def test_norm_errors():
  x = Tensor(rnd(50, 2, 6, 4))
  with pytest.raises(ValueError, match="6 channels cannot be split into 4 groups"): x.group_norm(4)
  with pytest.raises(ValueError, match=r"normalized_shape \(5,\) does not match"): x.layer_norm(5)
  with pytest.raises(ValueError, match=r"running_mean must have shape \(6,\)"): x.batch_norm(Tensor.zeros(4), Tensor.ones(6))
  with pytest.raises(ValueError, match="running_mean and running_var are needed"): x.batch_norm(None, None, training=False)

def test_half_precision_layer_norm_is_computed_in_float32():
  x = rnd(51, 2, 64, scale=100) + 1000
  out = Tensor(x, dtype=dtypes.float16).layer_norm(64)
  ref = F.layer_norm(torch.tensor(x).half().float(), (64,)).half().float().numpy()
  assert out.dtype == dtypes.float16
  np.testing.assert_allclose(out.numpy().astype(np.float32), ref, atol=2e-3, rtol=2e-3)

# ---------------------------------------------------------------- dropout

def test_dropout_zeroes_a_fraction_p_and_scales_the_rest():
  Tensor.manual_seed(1)
  x = Tensor.ones(64, 64)
  out = x.dropout(0.25).numpy()
  assert set(np.unique(out).tolist()) <= {0.0, float(np.float32(1 / 0.75))}
  assert abs((out == 0).mean() - 0.25) < 4 * math.sqrt(0.25 * 0.75 / out.size)
  assert x.dropout(0.25, training=False) is x and x.dropout(0.0) is x
  assert (x.dropout(1.0).numpy() == 0).all()
  with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"): x.dropout(1.5)

def test_dropout_gradient_is_the_same_mask():
  Tensor.manual_seed(2)
  x = Tensor(rnd(52, 16, 16), requires_grad=True)
  out = x.dropout(0.5)
  out.sum().backward()
  o, g = out.numpy(), x.grad.numpy()
  np.testing.assert_array_equal(g == 0, o == 0)
  np.testing.assert_allclose(g[g != 0], 2.0)

# ---------------------------------------------------------------- attention

SDPA = [  # query shape, key length, value embed, mask kind, is_causal, scale
  ((2, 5, 4), 5, 4, None, False, None),
  ((2, 3, 4, 8), 6, 5, "bool", False, None),
  ((1, 2, 6, 4), 6, 4, None, True, 0.3),
  ((1, 2, 4, 4), 7, 3, None, True, None),   # causal with more keys than queries: aligned top-left, as torch
  ((2, 2, 3, 4), 5, 4, "float", False, None),
  ((2, 4, 4), 5, 4, "bool_broadcast", False, 1.0),
]

def sdpa_mask(kind, L, S, B=()):
  rng = np.random.default_rng(53)
  if kind is None: return None
  if kind == "bool": return rng.random((*B, L, S)) < 0.7
  if kind == "bool_broadcast": return rng.random((L, S)) < 0.6
  return rnd(54, L, S)

@pytest.mark.parametrize("qs,S,ev,mask,causal,scale", SDPA, ids=str)
def test_scaled_dot_product_attention_matches_torch(qs, S, ev, mask, causal, scale):
  arrays = [rnd(55, *qs), rnd(56, *qs[:-2], S, qs[-1]), rnd(57, *qs[:-2], S, ev), sdpa_mask(mask, qs[-2], S, qs[:-2])]
  compare(lambda q, k, v, m: q.scaled_dot_product_attention(k, v, m, is_causal=causal, scale=scale),
          lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, m, is_causal=causal, scale=scale), arrays, grads=[0, 1, 2])

def test_attention_fully_masked_row_gives_zeros_as_torch():
  m = np.ones((3, 4), bool); m[1] = False
  compare(lambda q, k, v, m: q.scaled_dot_product_attention(k, v, m), lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, m),
          [rnd(58, 1, 3, 4), rnd(59, 1, 4, 4), rnd(60, 1, 4, 4), m], grads=[0, 1, 2])

def test_attention_grouped_query_heads_match_torch():
  compare(lambda q, k, v: q.scaled_dot_product_attention(k, v, is_causal=True, enable_gqa=True),
          lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), [rnd(61, 1, 4, 3, 4), rnd(62, 1, 2, 3, 4), rnd(63, 1, 2, 3, 4)])

def test_attention_forward_is_at_most_five_kernels():
  q, k, v = Tensor(rnd(64, 2, 2, 8, 4)), Tensor(rnd(65, 2, 2, 8, 4)), Tensor(rnd(66, 2, 2, 8, 4))
  assert kernels(lambda: q.scaled_dot_product_attention(k, v, is_causal=True)) <= 5

def test_attention_dropout_keeps_the_expectation():
  Tensor.manual_seed(3)
  q, k, v = Tensor(np.zeros((1, 4, 8), np.float32)), Tensor(np.zeros((1, 64, 8), np.float32)), Tensor(np.ones((1, 64, 8), np.float32))
  out = q.scaled_dot_product_attention(k, v, dropout_p=0.5).numpy()  # each row: the mean of 64 values 0 or 2
  assert abs(out.mean() - 1.0) < 4 * math.sqrt(1 / (4 * 64))

def test_attention_errors():
  q = Tensor(rnd(67, 2, 3, 4))
  with pytest.raises(ValueError, match="query and key embed sizes differ"): q.scaled_dot_product_attention(Tensor(rnd(67, 2, 3, 5)), Tensor(rnd(67, 2, 3, 4)))
  with pytest.raises(ValueError, match="not both"): q.scaled_dot_product_attention(q, q, Tensor.ones(3, 3, dtype=dtypes.bool), is_causal=True)

# ---------------------------------------------------------------- losses

def targets(seed, shape, C, ignore=None):
  t = np.random.default_rng(seed).integers(0, C, size=shape)
  if ignore is not None: t.reshape(-1)[::3] = ignore
  return t.astype(np.int64)

CE = [  # input shape, weight, ignore_index, reduction, label_smoothing
  ((4, 5), False, -100, "mean", 0.0),
  ((4, 5), True, -100, "sum", 0.0),
  ((4, 5), True, 2, "mean", 0.0),
  ((3, 4, 2, 3), False, -100, "none", 0.0),
  ((3, 4, 2, 3), True, 1, "mean", 0.2),
  ((6, 3), False, -1, "mean", 0.1),
  ((6, 3), True, -1, "none", 0.3),
  ((5,), False, -100, "mean", 0.0),   # one sample without a batch axis
]

@pytest.mark.parametrize("xs,weighted,ii,red,ls", CE, ids=str)
def test_cross_entropy_with_class_indices_matches_torch(xs, weighted, ii, red, ls):
  C = xs[1] if len(xs) > 1 else xs[0]
  t = targets(68, xs[:1] + xs[2:] if len(xs) > 1 else (), C, ii if ii >= 0 or ii == -1 else None)
  arrays = [rnd(69, *xs, scale=2), t, np.abs(rnd(70, C)) + 0.1 if weighted else None]
  compare(lambda x, t, w: x.cross_entropy(t, w, ignore_index=ii, reduction=red, label_smoothing=ls),
          lambda x, t, w: F.cross_entropy(x, t, w, ignore_index=ii, reduction=red, label_smoothing=ls), arrays, grads=[0])

@pytest.mark.parametrize("xs,weighted,red,ls", [((4, 5), False, "mean", 0.0), ((3, 4, 2), True, "sum", 0.2), ((3, 4), True, "none", 0.0),
                                                ((4,), False, "mean", 0.1)], ids=str)
def test_cross_entropy_with_probability_targets_matches_torch(xs, weighted, red, ls):
  C = xs[1] if len(xs) > 1 else xs[0]
  p = np.abs(rnd(71, *xs)); p = (p / p.sum(1 if len(xs) > 1 else 0, keepdims=True)).astype(np.float32)
  compare(lambda x, t, w: x.cross_entropy(t, w, reduction=red, label_smoothing=ls), lambda x, t, w: F.cross_entropy(x, t, w, reduction=red, label_smoothing=ls),
          [rnd(72, *xs), p, np.abs(rnd(73, C)) + 0.1 if weighted else None], grads=[0, 1])

def test_cross_entropy_is_stable_for_huge_logits():
  x = np.array([[1000., -1000., 0.], [-1e4, 1e4, 5.]], np.float32)
  compare(lambda x, t: x.cross_entropy(t), lambda x, t: F.cross_entropy(x, t), [x, np.array([1, 0])], grads=[0], atol=1e-3)

def test_cross_entropy_forward_is_at_most_four_kernels():
  x, t, w = Tensor(rnd(74, 8, 10)), Tensor(targets(75, (8,), 10)), Tensor(np.abs(rnd(76, 10)))
  assert kernels(lambda: x.cross_entropy(t)) <= 4
  assert kernels(lambda: x.cross_entropy(t, w, label_smoothing=0.1)) <= 4

@pytest.mark.parametrize("xs,weighted,ii,red", [((4, 5), True, -100, "mean"), ((3, 4, 2), False, 0, "sum"), ((3, 4, 2), True, 3, "none")], ids=str)
def test_nll_loss_matches_torch(xs, weighted, ii, red):
  t = targets(77, xs[:1] + xs[2:], xs[1])
  compare(lambda x, t, w: x.nll_loss(t, w, ignore_index=ii, reduction=red), lambda x, t, w: F.nll_loss(x, t, w, ignore_index=ii, reduction=red),
          [rnd(78, *xs), t, np.abs(rnd(79, xs[1])) if weighted else None], grads=[0])

def test_loss_errors():
  x = Tensor(rnd(80, 4, 5))
  with pytest.raises(ValueError, match=r"target shape \(3,\) does not match input shape \(4, 5\)"): x.cross_entropy(Tensor(np.zeros(3, np.int64)))
  with pytest.raises(ValueError, match="probability targets must have the input's shape"): x.cross_entropy(Tensor(rnd(80, 4, 4)))
  with pytest.raises(ValueError, match="reduction must be 'none', 'mean' or 'sum'"): x.mse_loss(x, reduction="avg")
  with pytest.raises(ValueError, match=r"weight must have shape \(5,\)"): x.cross_entropy(Tensor(np.zeros(4, np.int64)), Tensor.ones(4))

def probs(seed, *shape): return (1 / (1 + np.exp(-rnd(seed, *shape, scale=2)))).astype(np.float32)

@pytest.mark.parametrize("red,weighted", [("mean", False), ("sum", True), ("none", True)])
def test_binary_cross_entropy_matches_torch(red, weighted):
  compare(lambda x, t, w: x.binary_cross_entropy(t, w, reduction=red), lambda x, t, w: F.binary_cross_entropy(x, t, w, reduction=red),
          [probs(81, 3, 4), probs(82, 3, 4), np.abs(rnd(83, 4)) if weighted else None], grads=[0, 1])

def test_binary_cross_entropy_clamps_the_log_at_minus_100():
  compare(lambda x, t: x.binary_cross_entropy(t, reduction="none"), lambda x, t: F.binary_cross_entropy(x, t, reduction="none"),
          [np.array([0.0, 1.0, 0.5], np.float32), np.array([1.0, 0.0, 1.0], np.float32)], grads=[])

@pytest.mark.parametrize("red,weighted,pw", [("mean", False, False), ("sum", True, True), ("none", False, True)])
def test_binary_cross_entropy_with_logits_matches_torch(red, weighted, pw):
  x = rnd(84, 3, 4, scale=3); x[0, :2] = [80.0, -80.0]  # far logits: no overflow, no log(0)
  compare(lambda x, t, w, p: x.binary_cross_entropy_with_logits(t, w, reduction=red, pos_weight=p),
          lambda x, t, w, p: F.binary_cross_entropy_with_logits(x, t, w, reduction=red, pos_weight=p),
          [x, probs(85, 3, 4), np.abs(rnd(86, 4)) if weighted else None, np.abs(rnd(87, 4)) + 0.5 if pw else None], grads=[0, 1])

@pytest.mark.parametrize("name,kw", [("mse_loss", {}), ("mse_loss", {"reduction": "sum"}), ("l1_loss", {"reduction": "none"}), ("l1_loss", {}),
                                     ("smooth_l1_loss", {"beta": 0.5}), ("smooth_l1_loss", {"beta": 0.0, "reduction": "sum"}), ("smooth_l1_loss", {}),
                                     ("huber_loss", {"delta": 2.0}), ("huber_loss", {"reduction": "none"})], ids=str)
def test_regression_losses_match_torch(name, kw):
  compare(lambda x, t: getattr(x, name)(t, **kw), lambda x, t: getattr(F, name)(x, t, **kw), [rnd(88, 4, 5, scale=2), rnd(89, 4, 5, scale=2)])

@pytest.mark.parametrize("red,log_target", [("mean", False), ("batchmean", False), ("sum", True), ("none", False), ("batchmean", True)])
@pytest.mark.filterwarnings("ignore:reduction")
def test_kl_div_matches_torch(red, log_target):
  t = np.abs(rnd(90, 3, 4)); t /= t.sum(1, keepdims=True); t[0, 1] = 0  # a zero target contributes 0, not NaN
  t = np.log(t + 1e-3).astype(np.float32) if log_target else t.astype(np.float32)
  compare(lambda x, t: x.log_softmax(1).kl_div(t, reduction=red, log_target=log_target),
          lambda x, t: F.kl_div(F.log_softmax(x, 1), t, reduction=red, log_target=log_target), [rnd(91, 3, 4), t], grads=[0])
