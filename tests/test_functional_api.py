"""lucidgrad.nn.functional, nn.init and the weightless layers of nn/layers.py held to torch on the CPU: values and
gradients (torch in float64) of the functions of the one table and of the wrappers, the legacy loss arguments, the
layers' forwards, the dropouts' masks and statistics, the initialisers' distributions, calculate_gain, and the errors."""
import inspect, math
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
import lucidgrad.nn.functional as F
from lucidgrad import Tensor, dtypes, nn
from lucidgrad.nn import init
from conftest import rnd


@pytest.fixture(autouse=True)
def seeded():
  Tensor.manual_seed(0)
  torch.manual_seed(0)

def compare(lg_fn, th_fn, arrays, grads=None, rtol=2e-4, atol=2e-5, seed=0):
  """lg_fn(*Tensors) against th_fn(*torch tensors, float64): the output, its dtype kind, and the gradient of
  sum(out * g) for each float input (or those in `grads`)."""
  grads = [i for i, a in enumerate(arrays) if a is not None and a.dtype.kind == "f"] if grads is None else grads
  lg = [None if a is None else Tensor(a, requires_grad=i in grads) for i, a in enumerate(arrays)]
  th = [None if a is None else torch.tensor(a.astype(np.float64) if a.dtype.kind == "f" else a, requires_grad=i in grads) for i, a in enumerate(arrays)]
  out_t, out = th_fn(*th), lg_fn(*lg)
  assert out.shape == tuple(out_t.shape), f"shape {out.shape}, torch gives {tuple(out_t.shape)}"
  assert out.dtype.is_float() == out_t.dtype.is_floating_point
  if grads:
    g = rnd(seed + 99, *out_t.shape)
    (out * Tensor(g)).sum().backward()
    (out_t * torch.tensor(g, dtype=out_t.dtype)).sum().backward()
  out.realize(*[lg[i].grad for i in grads])
  np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=rtol, atol=atol, err_msg="forward")
  for i in grads: np.testing.assert_allclose(lg[i].grad.numpy(), th[i].grad.numpy(), rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")

# ---------------------------------------------------------------- the table of functions that are Tensor methods

def test_every_table_entry_is_a_tensor_method_with_torchs_name():
  for name, inplace in F._SAME_AS_TENSOR.items():
    assert hasattr(Tensor, name) and callable(getattr(F, name)) and hasattr(TF, name), name
    assert ("inplace" in inspect.signature(getattr(F, name)).parameters) == inplace, name
  assert F.relu.__name__ == "relu" and F.relu.__doc__.startswith("torch.nn.functional.relu")

ACTIVATIONS = [("relu", ()), ("relu6", ()), ("elu", (0.5,)), ("selu", ()), ("celu", (1.5,)), ("leaky_relu", (0.2,)), ("hardtanh", (-0.5, 0.7)),
               ("hardswish", ()), ("hardsigmoid", ()), ("silu", ()), ("mish", ()), ("gelu", {"approximate": "tanh"}), ("softplus", (2, 5)), ("softsign", ()),
               ("logsigmoid", ()), ("sigmoid", ()), ("tanh", ()), ("tanhshrink", ()), ("softshrink", (0.3,)), ("hardshrink", (0.4,)),
               ("threshold", (0.1, -2.0))]

@pytest.mark.parametrize("name,args", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_matches_torch_on_a_transposed_view(name, args):
  a = rnd(1, 5, 6, scale=3)
  args, kw = (args, {}) if isinstance(args, tuple) else ((), args)
  compare(lambda x: getattr(F, name)(x.T, *args, **kw), lambda x: getattr(TF, name)(x.T, *args, **kw), [a])

def test_inplace_flag_is_accepted_by_keyword_and_position_and_leaves_the_input():
  x = Tensor(rnd(2, 3, 4))
  before = x.numpy()
  for y in (F.relu(x, inplace=True), F.relu(x, True), F.leaky_relu(x, 0.1, True), F.dropout(x, 0.5, False, True), F.hardtanh(x, -1, 1, True)):
    assert y.shape == x.shape
  np.testing.assert_array_equal(F.relu(x, True).numpy(), np.maximum(before, 0))
  np.testing.assert_array_equal(x.numpy(), before)
  with pytest.raises(TypeError, match=r"relu\(\): input must be a Tensor, got a list"): F.relu([1.0])

def test_table_functions_of_several_arguments_match_torch():
  x, w, b = rnd(3, 2, 3, 7, 6), rnd(4, 4, 3, 3, 3), rnd(5, 4)
  compare(lambda x, w, b: F.conv2d(x, w, b, 1, 1), lambda x, w, b: TF.conv2d(x, w, b, 1, 1), [x, w, b])
  compare(lambda x: F.max_pool2d(x, 2, 2, 0, 1, True), lambda x: TF.max_pool2d(x, 2, 2, 0, 1, True), [x])
  compare(lambda x: F.avg_pool2d(x, 3, 2, 1, False, False), lambda x: TF.avg_pool2d(x, 3, 2, 1, False, False), [x])
  compare(lambda x, w, b: F.layer_norm(x, (6,), w, b), lambda x, w, b: TF.layer_norm(x, (6,), w, b), [x, rnd(6, 6), rnd(7, 6)])
  compare(lambda x, y: F.cosine_similarity(x, y, 1), lambda x, y: TF.cosine_similarity(x, y, 1), [x, rnd(8, 2, 3, 7, 6)])
  idx = np.array([0, 3, 2], dtype=np.int64)
  np.testing.assert_array_equal(F.one_hot(Tensor(idx), 5).numpy(), TF.one_hot(torch.tensor(idx), 5).numpy())

# ---------------------------------------------------------------- wrappers

@pytest.mark.parametrize("fn", ["softmax", "log_softmax", "softmin"])
def test_softmax_family_dims_dtype_and_the_implicit_dim(fn):
  a = rnd(9, 2, 3, 4)
  for dim in (-1, 0, 1):
    compare(lambda x: getattr(F, fn)(x, dim), lambda x: getattr(TF, fn)(x, dim), [a])
  assert getattr(F, fn)(Tensor(a), 1, dtype=dtypes.float64).dtype == dtypes.float64
  for shape in [(5,), (2, 5), (2, 3, 4), (2, 3, 2, 2)]:  # torch's rule without dim: 0 for 0/1/3-D input, else 1
    b = rnd(10, *shape)
    with pytest.warns(UserWarning, match="Implicit dimension choice"): got = getattr(F, fn)(Tensor(b)).numpy()
    with pytest.warns(UserWarning): want = getattr(TF, fn)(torch.tensor(b)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=str(shape))

def test_classification_losses_and_the_legacy_reduction_arguments():
  logits, tgt, w = rnd(11, 6, 4), np.array([0, 3, 1, 2, 3, 0], dtype=np.int64), np.abs(rnd(12, 4)) + 0.1
  tgt_ignored = np.array([0, -100, 1, 2, 3, -100], dtype=np.int64)
  compare(lambda x: F.cross_entropy(x, Tensor(tgt), Tensor(w), label_smoothing=0.1), lambda x: TF.cross_entropy(x, torch.tensor(tgt), torch.tensor(w, dtype=torch.float64), label_smoothing=0.1), [logits])
  compare(lambda x: F.cross_entropy(x, Tensor(tgt_ignored), size_average=False), lambda x: TF.cross_entropy(x, torch.tensor(tgt_ignored), reduction="sum"), [logits])
  compare(lambda x: F.nll_loss(F.log_softmax(x, 1), Tensor(tgt), reduce=False), lambda x: TF.nll_loss(TF.log_softmax(x, 1), torch.tensor(tgt), reduction="none"), [logits])
  compare(lambda x: F.nll_loss(x, Tensor(tgt), Tensor(w), ignore_index=3), lambda x: TF.nll_loss(x, torch.tensor(tgt), torch.tensor(w, dtype=torch.float64), ignore_index=3), [logits])
  p, y = 1 / (1 + np.exp(-rnd(13, 5, 3))), (rnd(14, 5, 3) > 0).astype(np.float32)
  compare(lambda x: F.binary_cross_entropy(x, Tensor(y), reduction="sum"), lambda x: TF.binary_cross_entropy(x, torch.tensor(y, dtype=torch.float64), reduction="sum"), [p])
  pw = np.abs(rnd(15, 3)) + 0.5
  compare(lambda x: F.binary_cross_entropy_with_logits(x, Tensor(y), pos_weight=Tensor(pw)),
          lambda x: TF.binary_cross_entropy_with_logits(x, torch.tensor(y, dtype=torch.float64), pos_weight=torch.tensor(pw, dtype=torch.float64)), [rnd(16, 5, 3)])
  lp, lt = F.log_softmax(Tensor(rnd(17, 4, 5)), 1), TF.log_softmax(torch.tensor(rnd(17, 4, 5), dtype=torch.float64), 1)
  compare(lambda x: F.kl_div(x, lp, reduction="sum", log_target=True),
          lambda x: TF.kl_div(x, lt, reduction="sum", log_target=True), [rnd(18, 4, 5)])

def test_regression_losses_with_weights_as_torch():
  a, b, w = rnd(19, 4, 5), rnd(20, 4, 5), np.abs(rnd(21, 4, 5))
  for red in ("mean", "sum", "none"):
    for name in ("mse_loss", "l1_loss"):
      compare(lambda x: getattr(F, name)(x, Tensor(b), reduction=red, weight=Tensor(w)),
              lambda x: getattr(TF, name)(x, torch.tensor(b, dtype=torch.float64), reduction=red, weight=torch.tensor(w, dtype=torch.float64)), [a])
    compare(lambda x: F.huber_loss(x, Tensor(b), red, 0.5, Tensor(w)), lambda x: TF.huber_loss(x, torch.tensor(b, dtype=torch.float64), red, 0.5, torch.tensor(w, dtype=torch.float64)), [a])
  compare(lambda x: F.smooth_l1_loss(x, Tensor(b), beta=0.3), lambda x: TF.smooth_l1_loss(x, torch.tensor(b, dtype=torch.float64), beta=0.3), [a])
  compare(lambda x: F.mse_loss(x, Tensor(b), size_average=False), lambda x: TF.mse_loss(x, torch.tensor(b, dtype=torch.float64), reduction="sum"), [a])
  with pytest.raises(ValueError, match=r"mse_loss: weight must have the input's shape \(4, 5\), got \(5,\)"): F.mse_loss(Tensor(a), Tensor(b), weight=Tensor.ones(5))
  with pytest.raises(ValueError, match=r"l1_loss: reduction must be 'none', 'mean' or 'sum', got 'avg'"): F.l1_loss(Tensor(a), Tensor(b), reduction="avg")

def test_linear_and_embedding_match_torch():
  compare(lambda x, w, b: F.linear(x, w, b), lambda x, w, b: TF.linear(x, w, b), [rnd(22, 2, 3, 4), rnd(23, 5, 4), rnd(24, 5)])
  compare(lambda x, w: F.linear(x.T, w), lambda x, w: TF.linear(x.T, w), [rnd(25, 4, 3), rnd(26, 2, 4)])
  with pytest.raises(ValueError, match=r"linear: the input's last dimension must match.*input \(2, 3\) and weight \(5, 4\)"): F.linear(Tensor.zeros(2, 3), Tensor.zeros(5, 4))
  idx = np.array([[1, 4, 1], [0, 4, 2]], dtype=np.int64)
  for kw in (dict(padding_idx=-1), dict(scale_grad_by_freq=True), dict(padding_idx=1, scale_grad_by_freq=True)):
    compare(lambda w: F.embedding(Tensor(idx), w, **kw), lambda w: TF.embedding(torch.tensor(idx), w, **kw), [rnd(27, 5, 3)])
  wl, wt = Tensor(rnd(28, 5, 3) * 3), torch.tensor(rnd(28, 5, 3) * 3)
  np.testing.assert_allclose(F.embedding(Tensor(idx), wl, max_norm=1.0).numpy(), TF.embedding(torch.tensor(idx), wt, max_norm=1.0).numpy(), rtol=1e-5)
  np.testing.assert_allclose(wl.numpy(), wt.numpy(), rtol=1e-5)  # the looked-up rows renormalised in place, as torch
  with pytest.raises(TypeError, match="embedding: the indices must be integers, got dtypes.float32"): F.embedding(Tensor([1.0]), wl)
  with pytest.raises(ValueError, match=r"embedding: padding_idx 7 must be within num_embeddings \(5\)"): F.embedding(Tensor(idx), wl, padding_idx=7)

def test_pad_interpolate_normalize_and_distances_match_torch():
  x = rnd(29, 2, 3, 5, 4)
  compare(lambda t: F.pad(t, (1, 2, 0, 1)), lambda t: TF.pad(t, (1, 2, 0, 1)), [x])
  compare(lambda t: F.pad(t, [2, 1], mode="reflect"), lambda t: TF.pad(t, [2, 1], mode="reflect"), [x[0]])
  compare(lambda t: F.pad(t, (1, 1), value=2.5), lambda t: TF.pad(t, (1, 1), value=2.5), [x])
  compare(lambda t: F.interpolate(t, scale_factor=1.7, mode="nearest", recompute_scale_factor=True),
          lambda t: TF.interpolate(t, scale_factor=1.7, mode="nearest", recompute_scale_factor=True), [x])
  compare(lambda t: F.upsample_bilinear(t, size=(7, 9)), lambda t: TF.interpolate(t, size=(7, 9), mode="bilinear", align_corners=True), [x])
  with pytest.raises(NotImplementedError, match="antialias"): F.interpolate(Tensor(x), scale_factor=2, mode="bilinear", antialias=True)
  compare(lambda t: F.normalize(t), lambda t: TF.normalize(t), [x])
  compare(lambda t: F.normalize(t, 1.0, -1), lambda t: TF.normalize(t, 1.0, -1), [np.concatenate([x, np.zeros_like(x)], axis=-1)])  # zero rows: eps
  compare(lambda a, b: F.pairwise_distance(a, b, 3.0, keepdim=True), lambda a, b: TF.pairwise_distance(a, b, 3.0, keepdim=True), [rnd(30, 4, 6), rnd(31, 4, 6)])
  compare(lambda t: F.glu(t, 1), lambda t: TF.glu(t, 1), [rnd(32, 3, 6, 2)])
  with pytest.raises(ValueError, match=r"glu: the size of dimension -1 must be even, got input shape \(3, 5\)"): F.glu(Tensor.zeros(3, 5))

def test_prelu_and_pixel_shuffle_match_torch():
  compare(lambda t, w: F.prelu(t, w), lambda t, w: TF.prelu(t, w), [rnd(33, 2, 3, 4), np.array([0.1, -0.2, 0.3], np.float32)])
  compare(lambda t, w: F.prelu(t, w), lambda t, w: TF.prelu(t, w), [rnd(34, 2, 3), np.array([0.25], np.float32)])
  with pytest.raises(ValueError, match=r"prelu: weight has 2 elements but the input \(shape \(2, 3\)\) has 3 channels"): F.prelu(Tensor.zeros(2, 3), Tensor.zeros(2))
  a = rnd(35, 2, 8, 3, 2)
  compare(lambda t: F.pixel_shuffle(t, 2), lambda t: TF.pixel_shuffle(t, 2), [a])
  compare(lambda t: F.pixel_unshuffle(t, 3), lambda t: TF.pixel_unshuffle(t, 3), [rnd(36, 1, 2, 6, 3)])
  with pytest.raises(ValueError, match=r"the channels \(8\) must be divisible by upscale_factor squared \(9\)"): F.pixel_shuffle(Tensor(a), 3)

# ---------------------------------------------------------------- dropout by channel, alpha dropout

@pytest.mark.parametrize("n", [1, 2, 3])
def test_channel_dropout_zeroes_whole_channels(n):
  fn, p = getattr(F, f"dropout{n}d"), 0.4
  x = np.abs(rnd(37, 20, 30, *([3] * n))) + 0.5
  out = fn(Tensor(x), p).numpy().reshape(20, 30, -1)
  zero, kept = (out == 0).all(-1), np.isclose(out, x.reshape(20, 30, -1) / (1 - p), rtol=1e-6).all(-1)
  assert (zero | kept).all() and abs(zero.mean() - p) < 0.08
  un = fn(Tensor(x[0]), p).numpy().reshape(30, -1)  # unbatched: (C, *spatial)
  assert ((un == 0).all(-1) | (un != 0).all(-1)).all()
  np.testing.assert_array_equal(fn(Tensor(x), p, training=False).numpy(), x)
  with pytest.raises(ValueError, match=rf"dropout{n}d: expected {n + 1}D \(unbatched\) or {n + 2}D \(batched\) input"): fn(Tensor.zeros(*([2] * (n + 3))))
  with pytest.raises(ValueError, match=rf"dropout{n}d: p must be between 0 and 1, got 1.5"): fn(Tensor(x), 1.5)

def test_alpha_dropout_keeps_mean_and_variance_and_is_affine_on_kept_values():
  x, p = rnd(38, 200, 200), 0.2
  out = F.alpha_dropout(Tensor(x), p, training=True).numpy()
  assert abs(out.mean()) < 0.02 and abs(out.std() - 1) < 0.02
  ref = TF.alpha_dropout(torch.tensor(x), p, training=True).numpy()  # torch's, for the same statistics
  assert abs(out.mean() - ref.mean()) < 0.03 and abs(out.std() - ref.std()) < 0.03
  a = 1 / math.sqrt((1.7580993408473766 ** 2 * p + 1) * (1 - p))
  dropped = np.isclose(out, -1.7580993408473766 * a + 1.7580993408473766 * a * p)
  assert abs(dropped.mean() - p) < 0.01
  np.testing.assert_allclose(out[~dropped], a * x[~dropped] + 1.7580993408473766 * a * p, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(F.alpha_dropout(Tensor(x), p).numpy(), x)  # training defaults to False, as torch
  ch = F.feature_alpha_dropout(Tensor(x.reshape(50, 40, 20)), 0.5, True).numpy()
  a2 = 1 / math.sqrt((1.7580993408473766 ** 2 * 0.5 + 1) * 0.5)
  dropped_ch = np.isclose(ch, -1.7580993408473766 * a2 * 0.5).all(-1)  # a dropped channel is one constant throughout
  kept_ch = np.isclose(ch, a2 * x.reshape(50, 40, 20) + 1.7580993408473766 * a2 * 0.5, rtol=1e-5, atol=1e-6).all(-1)
  assert (dropped_ch | kept_ch).all() and abs(dropped_ch.mean() - 0.5) < 0.06

# ---------------------------------------------------------------- the layers: forward against torch.nn

LAYERS = [  # (constructor, input shapes); each run on both libraries with the same input
  ("ReLU()", [(3, 4)]), ("LeakyReLU(0.3)", [(3, 4)]), ("ELU(0.7)", [(3, 4)]), ("CELU(1.3)", [(3, 4)]), ("SELU()", [(3, 4)]),
  ("GELU('tanh')", [(3, 4)]), ("SiLU()", [(3, 4)]), ("Mish()", [(3, 4)]), ("Softplus(2, 3)", [(3, 4)]), ("Hardtanh(-0.5, 2)", [(3, 4)]),
  ("ReLU6()", [(3, 4)]), ("Hardswish()", [(3, 4)]), ("Hardsigmoid()", [(3, 4)]), ("Softsign()", [(3, 4)]), ("Tanh()", [(3, 4)]),
  ("Sigmoid()", [(3, 4)]), ("LogSigmoid()", [(3, 4)]), ("Softmax(0)", [(3, 4)]), ("LogSoftmax(1)", [(3, 4)]), ("Softmin(-1)", [(3, 4)]),
  ("Softmax2d()", [(2, 3, 2, 2)]), ("Threshold(0.2, 5.0)", [(3, 4)]), ("Tanhshrink()", [(3, 4)]), ("Softshrink(0.2)", [(3, 4)]),
  ("Hardshrink(0.2)", [(3, 4)]), ("GLU(0)", [(4, 3)]), ("Flatten()", [(2, 3, 4)]), ("Flatten(0, 1)", [(2, 3, 4)]),
  ("Unflatten(1, (2, 3))", [(4, 6)]), ("Identity()", [(3,)]), ("PixelShuffle(2)", [(1, 4, 2, 3)]), ("CosineSimilarity(0)", [(4, 3), (4, 3)]),
  ("PairwiseDistance(1.0)", [(4, 3), (4, 3)]), ("MaxPool1d(2)", [(2, 3, 7)]), ("MaxPool2d(3, 2, 1)", [(1, 2, 7, 6)]),
  ("MaxPool3d(2, ceil_mode=True)", [(1, 1, 5, 4, 3)]), ("AvgPool1d(3, 1, 1)", [(2, 3, 7)]), ("AvgPool2d(2, count_include_pad=False, padding=1)", [(1, 2, 5, 6)]),
  ("AvgPool3d(2)", [(1, 2, 4, 4, 4)]), ("AdaptiveAvgPool1d(3)", [(2, 3, 7)]), ("AdaptiveAvgPool2d((2, None))", [(1, 2, 5, 6)]),
  ("AdaptiveAvgPool3d(1)", [(1, 2, 3, 4, 5)]), ("Upsample(scale_factor=2)", [(1, 2, 3, 3)]), ("Upsample(size=(5, 4), mode='bilinear')", [(1, 2, 3, 3)]),
  ("UpsamplingBilinear2d(scale_factor=2)", [(1, 1, 3, 2)]), ("ZeroPad2d((1, 0, 2, 1))", [(1, 2, 3, 3)]), ("ConstantPad1d(2, -1.5)", [(2, 3, 4)]),
  ("ReflectionPad2d(1)", [(1, 2, 3, 3)]), ("ReplicationPad1d((2, 1))", [(2, 3, 4)]), ("CircularPad2d(1)", [(1, 2, 3, 3)]),
  ("ConstantPad3d(1, 2.0)", [(1, 1, 2, 2, 2)]), ("MSELoss()", [(3, 4), (3, 4)]), ("L1Loss(reduction='sum')", [(3, 4), (3, 4)]),
  ("HuberLoss(delta=0.5)", [(3, 4), (3, 4)]), ("SmoothL1Loss(reduction='none')", [(3, 4), (3, 4)]), ("KLDivLoss(reduction='sum')", [(3, 4), (3, 4)]),
  ("BCEWithLogitsLoss()", [(3, 4), (3, 4)]),
]

@pytest.mark.parametrize("spec,shapes", LAYERS, ids=[s for s, _ in LAYERS])
def test_layer_matches_torch(spec, shapes):
  th, lg = eval("torch.nn." + spec), eval("nn." + spec)
  arrays = [rnd(40 + i, *s, scale=2) for i, s in enumerate(shapes)]
  if "BCE" in spec: arrays[1] = (arrays[1] > 0).astype(np.float32)
  if "KLDiv" in spec: arrays[1] = np.abs(arrays[1])  # a target is probabilities
  compare(lambda *xs: lg(*xs), lambda *xs: th(*xs), arrays, grads=[0] if "Loss" in spec else None)

def test_loss_layers_with_class_weights_register_them_as_buffers():
  w = np.abs(rnd(50, 4)) + 0.1
  th, lg = torch.nn.CrossEntropyLoss(torch.tensor(w, dtype=torch.float64), ignore_index=2, label_smoothing=0.2), nn.CrossEntropyLoss(Tensor(w), ignore_index=2, label_smoothing=0.2)
  assert list(lg.state_dict()) == list(th.state_dict()) == ["weight"]
  tgt = np.array([0, 2, 3, 1, 1], dtype=np.int64)
  compare(lambda x: lg(x, Tensor(tgt)), lambda x: th(x, torch.tensor(tgt)), [rnd(51, 5, 4)])
  th, lg = torch.nn.NLLLoss(reduction="sum"), nn.NLLLoss(size_average=False)  # the legacy argument
  compare(lambda x: lg(x, Tensor(tgt)), lambda x: th(x, torch.tensor(tgt)), [rnd(52, 5, 4)])
  p = 1 / (1 + np.exp(-rnd(53, 5, 4)))
  y = (rnd(54, 5, 4) > 0).astype(np.float32)
  compare(lambda x: nn.BCELoss(Tensor(w))(x, Tensor(y)), lambda x: torch.nn.BCELoss(torch.tensor(w, dtype=torch.float64))(x, torch.tensor(y, dtype=torch.float64)), [p])
  assert list(nn.BCEWithLogitsLoss(pos_weight=Tensor(w)).state_dict()) == list(torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(w)).state_dict())

def test_prelu_layer_learns_its_weight_like_torch():
  th, lg = torch.nn.PReLU(3, 0.1).double(), nn.PReLU(3, 0.1)
  assert [k for k, _ in lg.named_parameters()] == ["weight"] and lg.weight.requires_grad
  x, g = rnd(55, 2, 3, 4), rnd(56, 2, 3, 4)
  (lg(Tensor(x)) * Tensor(g)).sum().backward(); (th(torch.tensor(x, dtype=torch.float64)) * torch.tensor(g)).sum().backward()
  np.testing.assert_allclose(lg.weight.grad.numpy(), th.weight.grad.numpy(), rtol=1e-5)

def test_dropout_layers_follow_the_mode():
  x = Tensor(np.ones((4, 6, 5, 5), np.float32))
  for layer in (nn.Dropout(0.5), nn.Dropout2d(0.5), nn.AlphaDropout(0.5), nn.FeatureAlphaDropout(0.5)):
    assert not np.allclose(layer(x).numpy(), 1), layer  # training: a new layer's mode
    np.testing.assert_array_equal(layer.eval()(x).numpy(), x.numpy())
  with pytest.raises(ValueError, match="Dropout3d: p must be between 0 and 1, got -0.1"): nn.Dropout3d(-0.1)
  with pytest.raises(ValueError, match=r"Softmax2d: expected 3D or 4D input, got input shape \(2, 2\)"): nn.Softmax2d()(Tensor.zeros(2, 2))
  with pytest.raises(ValueError, match=r"ZeroPad2d: padding must be an int or 4 ints, got \(1, 2\)"): nn.ZeroPad2d((1, 2))
  with pytest.raises(ValueError, match=r"GELU: approximate must be 'none' or 'tanh', got 'fast'"): nn.GELU("fast")

def test_maxpool_layer_returns_indices_like_torch():
  x = rnd(57, 1, 2, 6, 6)
  (v, i), (tv, ti) = nn.MaxPool2d(2, return_indices=True)(Tensor(x)), torch.nn.MaxPool2d(2, return_indices=True)(torch.tensor(x))
  np.testing.assert_array_equal(v.numpy(), tv.numpy())
  np.testing.assert_array_equal(i.numpy(), ti.numpy())

# ---------------------------------------------------------------- nn.init

def test_calculate_gain_is_torchs():
  for nl in ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "sigmoid", "tanh", "relu", "selu"]:
    assert init.calculate_gain(nl) == pytest.approx(torch.nn.init.calculate_gain(nl), rel=1e-12), nl
  for param in (None, 0, 0.2, 3):
    assert init.calculate_gain("leaky_relu", param) == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", param), rel=1e-12)
  with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"): init.calculate_gain("swish")
  with pytest.raises(ValueError, match="negative_slope True is not a valid number"): init.calculate_gain("leaky_relu", True)

def big(*shape, dtype=None) -> Tensor: return Tensor.zeros(*shape, dtype=dtype).contiguous().realize()

def moments(t: Tensor) -> tuple[float, float, float, float]:
  a = t.numpy().astype(np.float64)
  return a.mean(), a.std(), a.min(), a.max()

def test_uniform_normal_and_constant_fill_in_place_with_the_right_moments():
  t = big(300, 400)
  assert init.uniform_(t, -2.0, 3.0) is t
  m, s, lo, hi = moments(t)
  assert abs(m - 0.5) < 0.02 and abs(s - 5 / math.sqrt(12)) < 0.01 and -2 <= lo < -1.99 and 2.99 < hi < 3
  init.normal_(t, 1.5, 0.5)
  m, s, _, _ = moments(t)
  assert abs(m - 1.5) < 0.005 and abs(s - 0.5) < 0.005
  init.trunc_normal_(t, 0.0, 1.0, -2.0, 2.0)
  m, s, lo, hi = moments(t)
  z = 2 * 0.5 * (1 + math.erf(2 / math.sqrt(2))) - 1
  want_std = math.sqrt(1 - 2 * 2 * math.exp(-2) / math.sqrt(2 * math.pi) / z)  # of N(0, 1) truncated to [-2, 2]
  assert abs(m) < 0.01 and abs(s - want_std) < 0.01 and -2 <= lo and hi <= 2
  for fill, v in ((init.ones_, 1), (init.zeros_, 0), (lambda x: init.constant_(x, -0.25), -0.25)):
    assert fill(t) is t and np.all(t.numpy() == v)
  h = big(3, 4, dtype=dtypes.float16)
  init.normal_(h)
  assert h.dtype == dtypes.float16 and np.isfinite(h.numpy()).all()

@pytest.mark.parametrize("shape", [(256, 384), (64, 32, 3, 3)], ids=["linear", "conv"])
def test_xavier_and_kaiming_moments_use_torchs_fans(shape):
  t = big(*shape)
  rf = math.prod(shape[2:])
  fan_in, fan_out = shape[1] * rf, shape[0] * rf
  assert init._calculate_fan_in_and_fan_out(t) == torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape)) == (fan_in, fan_out)
  cases = [(lambda: init.xavier_uniform_(t, gain=2.0), 2 * math.sqrt(6 / (fan_in + fan_out)), True),
           (lambda: init.xavier_normal_(t), math.sqrt(2 / (fan_in + fan_out)), False),
           (lambda: init.kaiming_uniform_(t, a=math.sqrt(5)), math.sqrt(2 / 6) * math.sqrt(3 / fan_in), True),
           (lambda: init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu"), math.sqrt(2) * math.sqrt(3 / fan_out), True),
           (lambda: init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"), math.sqrt(2) / math.sqrt(fan_out), False)]
  for fill, scale, uniform in cases:
    assert fill() is t
    m, s, lo, hi = moments(t)
    want_std = scale / math.sqrt(3) if uniform else scale
    assert abs(m) < 0.02 * want_std * 10 and abs(s / want_std - 1) < 0.02, (scale, s, want_std)
    if uniform: assert -scale <= lo and hi <= scale and hi > 0.99 * scale

def test_initialisers_write_a_parameter_in_place_under_no_grad():
  lin = nn.Linear(20, 30)
  w = lin.weight
  init.xavier_uniform_(lin.weight)
  assert lin.weight is w and w.requires_grad and w.is_leaf
  lin(Tensor(rnd(58, 2, 20))).sum().backward()
  assert w.grad is not None and w.grad.shape == (30, 20)

def test_eye_dirac_and_orthogonal():
  t = big(3, 5)
  np.testing.assert_array_equal(init.eye_(t).numpy(), torch.nn.init.eye_(torch.empty(3, 5)).numpy())
  for shape, groups in (((4, 2, 3), 1), ((6, 3, 3, 2), 2), ((2, 2, 1, 3, 3), 1)):
    np.testing.assert_array_equal(init.dirac_(big(*shape), groups).numpy(), torch.nn.init.dirac_(torch.empty(shape), groups).numpy(), err_msg=str(shape))
  for shape, gain in (((20, 8), 1.0), ((6, 4, 2), 2.0)):
    q = init.orthogonal_(big(*shape), gain).numpy().reshape(shape[0], -1).astype(np.float64)
    g = q.T @ q if shape[0] >= q.shape[1] else q @ q.T
    np.testing.assert_allclose(g, gain ** 2 * np.eye(len(g)), atol=1e-5)
  with pytest.raises(ValueError, match=r"eye_: only tensors with 2 dimensions are supported, got shape \(2, 2, 2\)"): init.eye_(big(2, 2, 2))
  with pytest.raises(ValueError, match=r"dirac_: dim 0 \(5\) must be divisible by groups \(2\)"): init.dirac_(big(5, 2, 3), 2)

def test_init_errors_and_empty_tensors():
  with pytest.raises(ValueError, match=r"fewer than 2 dimensions, got shape \(5,\)"): init.xavier_uniform_(big(5))
  with pytest.raises(ValueError, match=r"kaiming_normal_: mode must be 'fan_in' or 'fan_out', got 'fan_avg'"): init.kaiming_normal_(big(2, 2), mode="fan_avg")
  with pytest.raises(TypeError, match="a generator is not supported"): init.uniform_(big(2), generator=torch.Generator())
  with pytest.raises(TypeError, match="normal_: expected a Tensor, got a ndarray"): init.normal_(np.zeros(3))
  e = big(0, 3)
  assert init.kaiming_uniform_(e) is e and init.normal_(e) is e and e.shape == (0, 3)
