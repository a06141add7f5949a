"""Every layer of lucidgrad.nn held to its torch.nn twin on the CPU with the same weights (copied through the state
dict names, which must be torch's): the forward values and the gradients of the input and of every parameter; the
running statistics BatchNorm and InstanceNorm keep; the default initialisation (shapes and torch's bounds); the
train/eval flag; and the errors a user gets for bad input. torch runs in float64, lucidgrad in float32."""
import inspect
import math
import numpy as np
import pytest
import torch
from lucidgrad import Tensor, jit
from lucidgrad import nn
from lucidgrad.nn.state import get_state_dict, load_state_dict
from conftest import rnd


@pytest.fixture(autouse=True)
def seeded():
  Tensor.manual_seed(0)
  torch.manual_seed(0)

def tensors_of(layer) -> dict[str, Tensor]:
  """The tensors of a layer by the names nn.state gives them: they must be torch's state_dict keys."""
  return get_state_dict(layer)

def copy_from_torch(th: torch.nn.Module, lg) -> None:
  """torch's state dict written into the lucidgrad layer's tensors of the same names (in place, through assign)."""
  ours, theirs = tensors_of(lg), th.state_dict()
  assert set(ours) == set(theirs), f"tensor names {sorted(ours)}, torch has {sorted(theirs)}"
  for k, v in theirs.items():
    a = v.detach().numpy()
    assert ours[k].shape == a.shape, f"{k}: shape {ours[k].shape}, torch {a.shape}"
    ours[k].assign(Tensor(a.astype(np.float32) if a.dtype.kind == "f" else a))
  if ours: Tensor.realize(*ours.values())

def as_list(out) -> list:
  return [o for o in (out if isinstance(out, tuple) else (out,)) if o is not None]

def compare(th, lg, arrays, call=None, train=False, rtol=1e-4, atol=1e-5, grads=True, seed=0):
  """Run both layers (in train or eval mode) on the same inputs and compare every output, then the gradients of
  sum(out * g) (g a fixed random cotangent per output) with respect to each float input and each parameter."""
  call = call or (lambda layer, *xs: layer(*xs))
  th.double().train(train)
  copy_from_torch(th, lg)
  th_in = [torch.tensor(a.astype(np.float64) if a.dtype.kind == "f" else a, requires_grad=grads and a.dtype.kind == "f") for a in arrays]
  lg_in = [Tensor(a, requires_grad=grads and a.dtype.kind == "f") for a in arrays]
  outs_t = as_list(call(th, *th_in))
  with nn.train(train): outs_l = as_list(call(lg, *lg_in))
  assert len(outs_l) == len(outs_t)
  for o, ot in zip(outs_l, outs_t): assert o.shape == tuple(ot.shape), f"shape {o.shape}, torch {tuple(ot.shape)}"
  params = {k: t for k, t in tensors_of(lg).items() if t.requires_grad}
  if grads:
    gs = [rnd(seed + 99 + i, *o.shape) for i, o in enumerate(outs_t)]
    sum((o * torch.tensor(g, dtype=o.dtype)).sum() for o, g in zip(outs_t, gs)).backward()
    sum((o * Tensor(g)).sum() for o, g in zip(outs_l, gs)).backward()
  in_grads = [t.grad for t in lg_in if t.requires_grad]
  Tensor.realize(*outs_l, *[g for g in in_grads if g is not None], *[p.grad for p in params.values() if p.grad is not None])
  for i, (o, ot) in enumerate(zip(outs_l, outs_t)):
    np.testing.assert_allclose(o.numpy(), ot.detach().numpy(), rtol=rtol, atol=atol, err_msg=f"output {i}")
  if not grads: return
  for i, (t, tt) in enumerate(zip(lg_in, th_in)):
    if tt.grad is None: assert t.grad is None, f"input {i}: torch has no gradient"  # an input the call did not use
    elif tt.requires_grad: np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")
  th_params = dict(th.named_parameters())
  assert set(params) == set(th_params), f"parameters {sorted(params)}, torch has {sorted(th_params)}"
  for k, p in params.items():
    tg = th_params[k].grad
    if tg is None: assert p.grad is None or not np.any(p.grad.numpy()), f"{k}: torch has no gradient"
    else: np.testing.assert_allclose(p.grad.numpy(), tg.numpy(), rtol=rtol, atol=atol, err_msg=f"gradient of {k}")

def check_buffers(th, lg, rtol=1e-5, atol=1e-6):
  for k, v in th.state_dict().items():
    if k in dict(th.named_parameters()): continue
    np.testing.assert_allclose(tensors_of(lg)[k].numpy(), v.numpy(), rtol=rtol, atol=atol, err_msg=k)

# ---------------------------------------------------------------- linear

@pytest.mark.parametrize("shape,bias", [((2, 3, 5), False), ((5,), True)], ids=str)
def test_linear_matches_torch(shape, bias):
  compare(torch.nn.Linear(5, 3, bias=bias), nn.Linear(5, 3, bias=bias), [rnd(0, *shape)])

# ---------------------------------------------------------------- convolutions

CONV = [  # dims, (N, C, *spatial), out, kernel, kwargs
  (1, (2, 4, 11), 6, 3, dict(stride=2, padding=1, dilation=2, groups=2)),
  (1, (2, 2, 9), 4, 3, dict(padding=2, padding_mode="circular")),
  (1, (1, 2, 9), 2, 4, dict(padding="same", dilation=2, padding_mode="replicate")),  # the odd pad goes on the right
  (2, (1, 4, 9, 8), 4, (3, 2), dict(stride=(2, 1), padding=(1, 0), groups=4, bias=False)),
  (2, (2, 2, 7, 7), 3, 3, dict(padding=1, padding_mode="reflect", dilation=(1, 2))),
  (2, (1, 2, 6, 5), 2, (2, 3), dict(padding="valid", padding_mode="reflect")),
  (3, (1, 2, 5, 4, 4), 4, (3, 2, 2), dict(stride=(1, 2, 1), padding=1, groups=2)),
]

@pytest.mark.parametrize("n,xs,co,k,kw", CONV, ids=str)
def test_conv_matches_torch(n, xs, co, k, kw):
  th = getattr(torch.nn, f"Conv{n}d")(xs[1], co, k, **kw)
  compare(th, getattr(nn, f"Conv{n}d")(xs[1], co, k, **kw), [rnd(1, *xs)])

def test_conv2d_unbatched_input():
  compare(torch.nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 3, 3, padding=1), [rnd(2, 2, 5, 5)])

CONVT = [
  (1, (2, 4, 5), 6, 3, dict(stride=2, padding=1, output_padding=1, groups=2)),
  (1, (1, 2, 6), 3, 2, dict(dilation=2, bias=False)),
  (2, (2, 3, 4, 5), 2, 3, dict(stride=2, padding=1, output_padding=1)),
  (2, (1, 4, 3, 3), 4, (2, 3), dict(stride=(3, 2), padding=(0, 1), output_padding=(2, 0), groups=2, dilation=(1, 2))),
  (3, (1, 2, 3, 3, 2), 2, 2, dict(stride=2, output_padding=(1, 0, 1))),
]

@pytest.mark.parametrize("n,xs,co,k,kw", CONVT, ids=str)
def test_conv_transpose_matches_torch(n, xs, co, k, kw):
  th = getattr(torch.nn, f"ConvTranspose{n}d")(xs[1], co, k, **kw)
  compare(th, getattr(nn, f"ConvTranspose{n}d")(xs[1], co, k, **kw), [rnd(3, *xs)])

def test_conv_transpose_output_size_picks_output_padding():
  call = lambda layer, x: layer(x, output_size=[10, 9])
  compare(torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1), nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1), [rnd(4, 1, 2, 5, 5)], call=call)

# ---------------------------------------------------------------- batch norm

@pytest.mark.parametrize("cls,xs", [("BatchNorm1d", (6, 3)), ("BatchNorm1d", (4, 3, 5)), ("BatchNorm2d", (3, 3, 4, 5)),
                                    ("BatchNorm3d", (2, 3, 3, 2, 4))], ids=str)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_batchnorm_matches_torch(cls, xs, train):
  th, lg = getattr(torch.nn, cls)(3), getattr(nn, cls)(3)
  with torch.no_grad():  # affine and running stats that are not the defaults
    th.weight.copy_(torch.tensor(rnd(5, 3))); th.bias.copy_(torch.tensor(rnd(6, 3)))
    th.running_mean.copy_(torch.tensor(rnd(7, 3))); th.running_var.copy_(torch.tensor(np.abs(rnd(8, 3)) + 0.5))
  compare(th, lg, [rnd(9, *xs, scale=2) + 1], train=train)
  check_buffers(th, lg)

@pytest.mark.parametrize("momentum", [0.1, 0.5, None], ids=str)
def test_batchnorm_running_stats_after_steps(momentum):
  th, lg = torch.nn.BatchNorm2d(3, momentum=momentum), nn.BatchNorm2d(3, momentum=momentum)
  th.double().train(); copy_from_torch(th, lg)
  for i in range(3):
    x = rnd(10 + i, 4, 3, 2, 3, scale=i + 1) + i
    th(torch.tensor(x, dtype=torch.float64))
    with nn.train(): lg(Tensor(x))
    Tensor.realize(lg.running_mean, lg.running_var, lg.num_batches_tracked)  # with the step, as the module's docstring asks
  assert lg.num_batches_tracked.item() == 3
  check_buffers(th, lg)
  x = rnd(20, 2, 3, 2, 2)  # eval now uses the stats
  np.testing.assert_allclose(lg.eval()(Tensor(x)).numpy(), th.eval()(torch.tensor(x, dtype=torch.float64)).detach().numpy(), rtol=1e-4, atol=1e-5)

def test_batchnorm_stats_of_several_pending_steps_with_fixed_momentum():
  th, lg = torch.nn.BatchNorm1d(2, momentum=0.3), nn.BatchNorm1d(2, momentum=0.3)
  th.double().train(); copy_from_torch(th, lg)
  for i in range(3):
    x = rnd(30 + i, 5, 2) + i
    th(torch.tensor(x, dtype=torch.float64))
    with nn.train(): lg(Tensor(x))
  check_buffers(th, lg)  # three pending updates, realized only now

@pytest.mark.parametrize("first", ["num_batches_tracked", "running_mean", "running_var"])
def test_batchnorm_cumulative_stats_realized_in_any_order(first):
  th, lg = torch.nn.BatchNorm1d(2, momentum=None), nn.BatchNorm1d(2, momentum=None)
  th.double().train(); copy_from_torch(th, lg)
  for i in range(2):
    x = rnd(32 + i, 5, 2) * (i + 1)
    th(torch.tensor(x, dtype=torch.float64))
    with nn.train(): lg(Tensor(x))
    getattr(lg, first).realize()  # the others read the count it just wrote: they must see the count of this step
    Tensor.realize(lg.running_mean, lg.running_var, lg.num_batches_tracked)
  check_buffers(th, lg)

def test_batchnorm_cumulative_stats_of_several_pending_steps():
  th, lg = torch.nn.BatchNorm1d(2, momentum=None), nn.BatchNorm1d(2, momentum=None)
  th.double().train(); copy_from_torch(th, lg)
  for i in range(3):
    x = rnd(34 + i, 5, 2) + i
    th(torch.tensor(x, dtype=torch.float64))
    with nn.train(): lg(Tensor(x))
  check_buffers(th, lg)

def test_batchnorm_stats_realized_after_a_weight_update_use_the_old_weights():
  lin, bn = nn.Linear(2, 2), nn.BatchNorm1d(2)
  x = rnd(37, 6, 2)
  with nn.train(): bn(lin(Tensor(x)))
  w = lin.weight.numpy().copy()
  lin.weight.assign(lin.weight * 2).realize()  # an optimiser step, before the stats were realized
  np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * (x @ w.T + lin.bias.numpy()).mean(0), rtol=1e-5, atol=1e-6)

def test_batchnorm_stats_update_on_every_jit_replay():
  th, lg = torch.nn.BatchNorm1d(3), nn.BatchNorm1d(3)
  th.double().train(); copy_from_torch(th, lg)
  @jit
  def step(x: Tensor) -> Tensor:
    with nn.train(): y = lg(x)
    return y.square().mean().realize(lg.running_mean, lg.running_var, lg.num_batches_tracked)
  for i in range(4):
    x = rnd(40 + i, 5, 3) + i
    step(Tensor(x)); th(torch.tensor(x, dtype=torch.float64))
  check_buffers(th, lg)

@pytest.mark.parametrize("kw", [dict(affine=False), dict(track_running_stats=False), dict(affine=False, track_running_stats=False), dict(bias=False)],
                         ids=str)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_batchnorm_options(kw, train):
  if "bias" in kw and "bias" not in inspect.signature(torch.nn.BatchNorm2d).parameters:
    pytest.skip(f"torch {torch.__version__}'s BatchNorm2d has no bias= to compare with (the GPU machine's torch 2.11)")
  th, lg = torch.nn.BatchNorm2d(2, **kw), nn.BatchNorm2d(2, **kw)
  compare(th, lg, [rnd(11, 3, 2, 3, 3) + 0.5], train=train)
  check_buffers(th, lg)

def test_generic_batchnorm_takes_any_rank():
  compare(torch.nn.BatchNorm1d(3), nn.BatchNorm(3), [rnd(12, 4, 3, 2)], train=True)
  compare(torch.nn.BatchNorm3d(3), nn.BatchNorm(3), [rnd(13, 2, 3, 2, 2, 2)], train=True)

# ---------------------------------------------------------------- other norms

@pytest.mark.parametrize("shape,kw", [(5, dict()), ((3, 5), dict()), (5, dict(elementwise_affine=False)), (5, dict(bias=False, eps=1e-3))], ids=str)
def test_layernorm_matches_torch(shape, kw):
  th = torch.nn.LayerNorm(shape, **kw)
  if th.weight is not None:
    with torch.no_grad(): th.weight.copy_(torch.tensor(rnd(14, *th.weight.shape)))
  compare(th, nn.LayerNorm(shape, **kw), [rnd(15, 2, 3, 5)])

@pytest.mark.parametrize("g,c,xs,kw", [(2, 4, (2, 4, 3, 3), dict()), (1, 3, (2, 3, 5), dict(affine=False)), (3, 3, (1, 3, 2, 2, 2), dict(eps=1e-3))],
                         ids=str)
def test_groupnorm_matches_torch(g, c, xs, kw):
  th = torch.nn.GroupNorm(g, c, **kw)
  if th.weight is not None:
    with torch.no_grad(): th.weight.copy_(torch.tensor(rnd(16, c))); th.bias.copy_(torch.tensor(rnd(17, c)))
  compare(th, nn.GroupNorm(g, c, **kw), [rnd(18, *xs)])

@pytest.mark.parametrize("shape,kw", [(6, dict()), ((2, 6), dict(eps=1e-5)), (6, dict(elementwise_affine=False))], ids=str)
def test_rmsnorm_matches_torch(shape, kw):
  th = torch.nn.RMSNorm(shape, **kw)
  if th.weight is not None:
    with torch.no_grad(): th.weight.copy_(torch.tensor(rnd(19, *th.weight.shape)))
  # torch's eps=None is float64's machine epsilon here (it runs in float64): pass float32's to both
  lg = nn.RMSNorm(shape, **kw)
  if kw.get("eps") is None: th.eps = lg.eps = float(np.finfo(np.float32).eps)
  compare(th, lg, [rnd(20, 3, 2, 6)])

@pytest.mark.parametrize("n,xs", [(1, (3, 5)), (2, (2, 3, 3, 4)), (3, (1, 3, 2, 3, 2))], ids=str)
@pytest.mark.parametrize("kw", [dict(), dict(affine=True), dict(track_running_stats=True, momentum=0.3)], ids=str)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_instancenorm_matches_torch(n, xs, kw, train):
  th, lg = getattr(torch.nn, f"InstanceNorm{n}d")(3, **kw), getattr(nn, f"InstanceNorm{n}d")(3, **kw)
  with torch.no_grad():
    if th.weight is not None: th.weight.copy_(torch.tensor(rnd(21, 3))); th.bias.copy_(torch.tensor(rnd(22, 3)))
    if th.running_mean is not None: th.running_mean.copy_(torch.tensor(rnd(23, 3))); th.running_var.copy_(torch.tensor(np.abs(rnd(24, 3)) + 0.5))
  compare(th, lg, [rnd(25, *xs, scale=2) + 1], train=train)
  check_buffers(th, lg)

# ---------------------------------------------------------------- embedding, dropout

@pytest.mark.parametrize("kw", [dict(), dict(padding_idx=2), dict(padding_idx=-1, scale_grad_by_freq=True), dict(scale_grad_by_freq=True)], ids=str)
def test_embedding_matches_torch(kw):
  idx = np.array([[0, 2, 2, 5], [6, 1, 2, 0]], dtype=np.int64)
  th = torch.nn.Embedding(7, 4, **kw)
  compare(th, nn.Embedding(7, 4, **kw), [idx])

def test_embedding_max_norm_renormalises_the_rows_it_reads():
  th, lg = torch.nn.Embedding(6, 3, max_norm=1.0), nn.Embedding(6, 3, max_norm=1.0)
  with torch.no_grad(): th.weight.copy_(torch.tensor(rnd(26, 6, 3, scale=2)))
  idx = np.array([1, 4, 4, 0], dtype=np.int64)
  compare(th, lg, [idx], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(lg.weight.numpy(), th.weight.detach().numpy(), rtol=1e-5, atol=1e-6)  # rows 1, 4, 0 shrunk, the rest kept

def test_embedding_int32_indices_and_padding_row_starts_at_zero():
  e = nn.Embedding(5, 3, padding_idx=1)
  assert not np.any(e.weight.numpy()[1]) and np.all(np.any(e.weight.numpy()[[0, 2, 3, 4]] != 0, axis=1))
  out = e(Tensor(np.array([1, 3], dtype=np.int32)))
  np.testing.assert_array_equal(out.numpy(), e.weight.numpy()[[1, 3]])

def test_dropout_zero_p_is_identity():
  x = Tensor(rnd(27, 4, 5))
  with nn.train(): np.testing.assert_array_equal(nn.Dropout(0.0)(x).numpy(), x.numpy())

def test_dropout_in_eval_is_identity():
  x = Tensor(rnd(28, 4, 5))
  np.testing.assert_array_equal(nn.Dropout(0.7).eval()(x).numpy(), x.numpy())
  with nn.train(False): np.testing.assert_array_equal(nn.Dropout(0.7)(x).numpy(), x.numpy())

def test_dropout_in_training_zeroes_p_and_scales_the_rest():
  p, x = 0.3, np.abs(rnd(29, 100, 100)) + 0.1
  xt = Tensor(x, requires_grad=True)
  with nn.train(): y = nn.Dropout(p)(xt)
  y.sum().backward()
  out, g = y.numpy(), xt.grad.numpy()
  kept = out != 0
  assert abs(1 - kept.mean() - p) < 0.02
  np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-6)
  np.testing.assert_allclose(g, kept / (1 - p), rtol=1e-6)  # the gradient goes through the same mask
  with nn.train(): assert not np.any(nn.Dropout(1.0)(Tensor(x)).numpy())

# ---------------------------------------------------------------- LSTM cell

@pytest.mark.parametrize("xs,state,bias", [((3, 4), True, True), ((4,), False, False)], ids=str)
def test_lstmcell_matches_torch(xs, state, bias):
  lead = xs[:-1]
  arrays = [rnd(30, *xs)] + ([rnd(31, *lead, 5), rnd(32, *lead, 5)] if state else [])
  call = (lambda layer, x, h, c: layer(x, (h, c))) if state else (lambda layer, x: layer(x))
  compare(torch.nn.LSTMCell(4, 5, bias=bias), nn.LSTMCell(4, 5, bias=bias), arrays, call=call)

def test_lstmcell_runs_a_sequence():
  th, lg = torch.nn.LSTMCell(4, 5), nn.LSTMCell(4, 5)
  def run(layer, xs):  # the state of step 1 feeds step 2: gradients flow back through both
    hc = None
    for t in range(xs.shape[0]): hc = layer(xs[t], hc)
    return hc
  compare(th, lg, [rnd(33, 2, 3, 4)], call=run)

# ---------------------------------------------------------------- multi-head attention

def mha_call(need_weights=True, average=True, masks=(), is_causal=False, self_attn=False):
  """A call of either layer on query, key, value arrays followed by the named masks."""
  def call(layer, q, k, v, *ms):
    kw = dict(zip(masks, ms))
    if not isinstance(q, Tensor):  # torch: bool masks stay bool, float masks take the input's dtype
      kw = {n: m if m.dtype == torch.bool else m.to(q.dtype) for n, m in kw.items()}
    if self_attn: k = v = q
    return layer(q, k, v, need_weights=need_weights, average_attn_weights=average, is_causal=is_causal, **kw)
  return call

@pytest.mark.parametrize("kw,ckw", [
  (dict(batch_first=True, bias=False, kdim=6, vdim=3), dict()),
  (dict(add_bias_kv=True, add_zero_attn=True), dict(masks=("attn_mask", "key_padding_mask"))),
  (dict(num_heads=4), dict(masks=("attn_mask",), average=False)),
  (dict(batch_first=True), dict(masks=("key_padding_mask",), need_weights=False)),
], ids=["batch_first_kdim_vdim_no_bias", "bias_kv_zero_attn", "mask_3d_per_head", "kpm_sdpa"])
def test_mha_matches_torch(kw, ckw):
  heads, bf = kw.pop("num_heads", 2), kw.get("batch_first", False)
  N, L, S = 2, 3, 4
  lay = (lambda *s: s) if bf else (lambda *s: (s[1], s[0], s[2]))
  arrays = [rnd(35, *lay(N, L, 8)), rnd(36, *lay(N, S, kw.get("kdim", 8))), rnd(37, *lay(N, S, kw.get("vdim", 8)))]
  attn_mask = np.random.default_rng(38).random((N * heads, L, S) if heads == 4 else (L, S)) < 0.4
  attn_mask[..., 0] = False  # every query sees a key: torch gives NaN for one that sees none, lucidgrad zeros
  masks = {"attn_mask": attn_mask,
           "key_padding_mask": np.array([[False, False, True, False], [False, True, False, False]])}
  arrays += [masks[m] for m in ckw.get("masks", ())]
  compare(torch.nn.MultiheadAttention(8, heads, **kw), nn.MultiheadAttention(8, heads, **kw), arrays, call=mha_call(**ckw))

def test_mha_self_attention_with_float_masks_and_causal_hint_matches_torch():
  L = 4
  causal = np.triu(np.ones((L, L), dtype=bool), 1)
  kpm = np.array([[0.0, -1.5, 0.0, 0.0], [0.0, 0.0, 0.0, -np.inf]], dtype=np.float32)
  x = rnd(39, L, 2, 8)
  compare(torch.nn.MultiheadAttention(8, 2), nn.MultiheadAttention(8, 2), [x, x, x, np.where(causal, -np.inf, 0.25).astype(np.float32), kpm],
          call=mha_call(masks=("attn_mask", "key_padding_mask"), self_attn=True))
  # is_causal is only a hint when the mask is given (as in torch); without one, lucidgrad builds the causal mask itself
  lg = nn.MultiheadAttention(8, 2)
  a, _ = lg(Tensor(x), Tensor(x), Tensor(x), attn_mask=Tensor(causal))
  b, _ = lg(Tensor(x), Tensor(x), Tensor(x), attn_mask=Tensor(causal), is_causal=True)
  c, _ = lg(Tensor(x), Tensor(x), Tensor(x), is_causal=True)
  np.testing.assert_array_equal(a.numpy(), b.numpy())
  np.testing.assert_allclose(c.numpy(), a.numpy(), rtol=1e-6, atol=1e-7)

def test_mha_unbatched_matches_torch():
  q, kv = rnd(40, 3, 8), rnd(41, 5, 8)
  compare(torch.nn.MultiheadAttention(8, 2), nn.MultiheadAttention(8, 2), [q, kv, kv, np.array([False, True, False, False, False])],
          call=mha_call(masks=("key_padding_mask",)))

def test_mha_query_that_sees_no_key_gives_zeros():
  lg = nn.MultiheadAttention(4, 1)
  x = Tensor(rnd(42, 3, 1, 4))
  for nw in (True, False):
    out, w = lg(x, x, x, attn_mask=Tensor(np.array([[True] * 3, [False] * 3, [False] * 3])), need_weights=nw)
    o = out.numpy()
    assert not np.isnan(o).any()
    np.testing.assert_allclose(o[0, 0], lg.out_proj.bias.numpy(), atol=1e-7)  # zero attention output: only the bias
    if nw: assert not np.any(w.numpy()[0, 0])

def test_mha_dropout_drops_attention_weights_only_in_training():
  lg = nn.MultiheadAttention(4, 1, dropout=0.5)
  x = Tensor(rnd(43, 6, 1, 4))
  _, w_eval = lg.eval()(x, x, x)
  _, w_train = lg.train()(x, x, x)
  we, wt = w_eval.numpy(), w_train.numpy()
  dropped = wt == 0
  assert 0.2 < dropped.mean() < 0.8
  np.testing.assert_allclose(wt[~dropped], we[~dropped] * 2, rtol=1e-5)  # the rest scaled by 1/(1-p)

# ---------------------------------------------------------------- default initialisation

INIT = [  # a layer built from either module, {name: the bound of its uniform initialisation}
  pytest.param(lambda m: m.Linear(20, 30), {"weight": 1 / math.sqrt(20), "bias": 1 / math.sqrt(20)}, id="Linear"),
  pytest.param(lambda m: m.Conv2d(6, 8, (3, 2), groups=2), {"weight": 1 / math.sqrt(3 * 6), "bias": 1 / math.sqrt(3 * 6)}, id="Conv2d"),
  pytest.param(lambda m: m.Conv1d(4, 6, 5, bias=False), {"weight": 1 / math.sqrt(20)}, id="Conv1d"),
  pytest.param(lambda m: m.ConvTranspose2d(4, 6, 3, groups=2), {"weight": 1 / math.sqrt(27), "bias": 1 / math.sqrt(27)}, id="ConvTranspose2d"),
  pytest.param(lambda m: m.LSTMCell(10, 16), {k: 0.25 for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}, id="LSTMCell"),
  pytest.param(lambda m: m.MultiheadAttention(16, 4), {"in_proj_weight": math.sqrt(6 / 64), "out_proj.weight": 0.25}, id="MultiheadAttention"),
  pytest.param(lambda m: m.MultiheadAttention(16, 4, kdim=8, vdim=4, add_bias_kv=True),
               {"q_proj_weight": math.sqrt(6 / 32), "k_proj_weight": math.sqrt(6 / 24), "v_proj_weight": math.sqrt(6 / 20), "out_proj.weight": 0.25},
               id="MultiheadAttention_kdim_vdim_bias_kv"),
  pytest.param(lambda m: m.BatchNorm2d(5), {}, id="BatchNorm2d"),
  pytest.param(lambda m: m.BatchNorm1d(5, affine=False, track_running_stats=False), {}, id="BatchNorm1d_bare"),
  pytest.param(lambda m: m.InstanceNorm2d(5, affine=True, track_running_stats=True), {}, id="InstanceNorm2d"),
  pytest.param(lambda m: m.LayerNorm((3, 4)), {}, id="LayerNorm"),
  pytest.param(lambda m: m.GroupNorm(2, 6), {}, id="GroupNorm"),
  pytest.param(lambda m: m.RMSNorm(7), {}, id="RMSNorm"),
  pytest.param(lambda m: m.Embedding(50, 20, padding_idx=3), {}, id="Embedding"),
]

@pytest.mark.parametrize("make,bounds", INIT)
def test_default_init_matches_torch(make, bounds):
  lg, th = make(nn), make(torch.nn)
  ours, theirs = tensors_of(lg), th.state_dict()
  assert set(ours) == set(theirs)
  th_params = dict(th.named_parameters())
  for k, v in theirs.items():
    t, a = ours[k], ours[k].numpy()
    assert t.shape == tuple(v.shape) and a.dtype == v.numpy().dtype, f"{k}: {t.shape} {a.dtype}, torch {tuple(v.shape)} {v.dtype}"
    assert bool(t.requires_grad) == (k in th_params), f"{k}: requires_grad {t.requires_grad}"
    if k in bounds:  # uniform in +-b: inside the bound, and (given enough samples) spread like a uniform
      assert np.abs(a).max() <= bounds[k], f"{k}: max |x| {np.abs(a).max()}, bound {bounds[k]}"
      if a.size >= 100: assert np.abs(a).max() > 0.9 * bounds[k] and abs(a.std() - bounds[k] / math.sqrt(3)) < 0.15 * bounds[k] / math.sqrt(3), k
    elif k in ("bias_k", "bias_v"): assert 0 < np.abs(a).max() < 5 / math.sqrt(16)  # xavier normal, std 1/sqrt(E)
    elif k == "weight" and isinstance(lg, nn.Embedding):  # N(0, 1), padding row zero
      assert abs(a.mean()) < 0.1 and abs(a.std() - 1) < 0.1 and not np.any(a[3])
    else: np.testing.assert_array_equal(a, v.numpy(), err_msg=k)  # constants: ones, zeros, 0

def test_parameters_differ_between_layers_and_follow_the_seed():
  a, b = nn.Linear(4, 4), nn.Linear(4, 4)
  assert not np.array_equal(a.weight.numpy(), b.weight.numpy())
  Tensor.manual_seed(7); c = nn.Linear(4, 4)
  Tensor.manual_seed(7); d = nn.Linear(4, 4)
  np.testing.assert_array_equal(c.weight.numpy(), d.weight.numpy())

def test_a_torch_models_state_dict_loads_one_to_one():
  class Ours:
    def __init__(self):
      self.conv, self.bn = nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4)
      self.att = nn.MultiheadAttention(8, 2, kdim=4, vdim=4, add_bias_kv=True)
      self.cells, self.emb, self.ln = [nn.LSTMCell(3, 4), nn.LSTMCell(4, 4)], nn.Embedding(5, 3), nn.LayerNorm(3)
  class Theirs(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.conv, self.bn = torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4)
      self.att = torch.nn.MultiheadAttention(8, 2, kdim=4, vdim=4, add_bias_kv=True)
      self.cells = torch.nn.ModuleList([torch.nn.LSTMCell(3, 4), torch.nn.LSTMCell(4, 4)])
      self.emb, self.ln = torch.nn.Embedding(5, 3), torch.nn.LayerNorm(3)
  ours, theirs = Ours(), Theirs()
  assert load_state_dict(ours, {k: Tensor(v.numpy()) for k, v in theirs.state_dict().items()}) == ([], [])  # strict: the same keys
  got = get_state_dict(ours)
  for k, v in theirs.state_dict().items(): np.testing.assert_array_equal(got[k].numpy(), v.numpy(), err_msg=k)

# ---------------------------------------------------------------- train / eval flag

def test_layers_start_in_training_mode_and_eval_sets_every_submodule():
  assert nn.Dropout().training is True and nn.BatchNorm1d(2).training is True  # as torch's
  m = nn.MultiheadAttention(4, 1)
  assert m.eval() is m and not m.training and not m.out_proj.training
  m.train()
  assert m.training and m.out_proj.training

def test_train_context_overrides_every_flag_and_restores_them():
  d, b = nn.Dropout(0.5), nn.BatchNorm1d(2).eval()
  with nn.train():
    assert d.training is True and b.training is True
    with nn.train(False): assert d.training is False and b.training is False
    assert b.training is True
  assert d.training is True and b.training is False  # each module's own flag again

def test_the_train_context_wins_over_a_layers_own_flag():
  d = nn.Dropout(0.5)
  x = Tensor(np.ones((50, 50), np.float32))
  assert np.any(d(x).numpy() == 0)  # a new layer trains
  with nn.train(False): np.testing.assert_array_equal(d(x).numpy(), x.numpy())
  d.eval()
  np.testing.assert_array_equal(d(x).numpy(), x.numpy())
  with nn.train(): assert np.any(d(x).numpy() == 0)

# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("make,x,match", [
  (lambda: nn.Linear(3, 4), (2, 5), r"Linear\(in_features=3, out_features=4\).*must be 3.*\(2, 5\)"),
  (lambda: nn.Conv2d(3, 4, 3), (1, 2, 5, 5), r"input has 2 channels but the weight expects 3"),
  (lambda: nn.Conv2d(3, 4, 3), (3, 5), r"input must have 3 \(unbatched\) or 4 \(batched\) dimensions.*\(3, 5\)"),
  (lambda: nn.BatchNorm2d(3), (2, 3, 4), r"BatchNorm2d: expected 4D input.*\(2, 3, 4\)"),
  (lambda: nn.BatchNorm1d(3), (2, 4), r"BatchNorm1d\(3\): the input has 4 channels"),
  (lambda: nn.LayerNorm(4), (2, 5), r"normalized_shape \(4,\) does not match.*\(2, 5\)"),
  (lambda: nn.GroupNorm(2, 4), (2, 6, 3), r"GroupNorm\(2, 4\): expected input \(N, 4, \.\.\.\), got shape \(2, 6, 3\)"),
  (lambda: nn.LSTMCell(3, 4), (2, 5), r"LSTMCell\(3, 4\): expected input \(N, 3\)"),
  (lambda: nn.InstanceNorm2d(3, affine=True), (2, 4, 3, 3), r"InstanceNorm2d\(3\): the input has 4 channels"),
], ids=["linear", "conv_channels", "conv_rank", "bn_rank", "bn_channels", "layernorm", "groupnorm", "lstm", "instancenorm"])
def test_bad_input_raises_a_clear_error(make, x, match):
  with pytest.raises(ValueError, match=match): make()(Tensor.zeros(*x))

def test_bad_arguments_raise_clear_errors():
  with pytest.raises(ValueError, match=r"in_channels \(3\) must be divisible by groups \(2\)"): nn.Conv2d(3, 4, 3, groups=2)
  with pytest.raises(ValueError, match=r"padding_mode must be one of"): nn.Conv1d(3, 4, 3, padding_mode="mirror")
  with pytest.raises(ValueError, match=r"padding='same' needs stride 1"): nn.Conv2d(3, 4, 3, stride=2, padding="same")
  with pytest.raises(ValueError, match=r"ConvTranspose2d: only 'zeros' padding_mode"): nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect")
  with pytest.raises(ValueError, match=r"embed_dim \(10\) must be divisible by num_heads \(3\)"): nn.MultiheadAttention(10, 3)
  with pytest.raises(ValueError, match=r"GroupNorm: num_channels \(5\) must be divisible by num_groups \(2\)"): nn.GroupNorm(2, 5)
  with pytest.raises(ValueError, match=r"Dropout: p must be between 0 and 1, got 1.5"): nn.Dropout(1.5)
  with pytest.raises(ValueError, match=r"padding_idx 9 must be within num_embeddings \(5\)"): nn.Embedding(5, 2, padding_idx=9)
  with pytest.raises(TypeError, match=r"Embedding: the indices must be integers, got dtypes.float32"): nn.Embedding(5, 2)(Tensor([1.0, 2.0]))
  with pytest.raises(ValueError, match=r"training needs more than one value per channel"):
    with nn.train(): nn.BatchNorm1d(3)(Tensor.zeros(1, 3))
  m = nn.MultiheadAttention(8, 2)
  x = Tensor.zeros(3, 2, 8)
  with pytest.raises(ValueError, match=r"attn_mask must have shape \(3, 3\) or \(4, 3, 3\), got \(3, 4\)"): m(x, x, x, attn_mask=Tensor.zeros(3, 4))
  with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(2, 3\), got \(3, 2\)"): m(x, x, x, key_padding_mask=Tensor.zeros(3, 2))
  with pytest.raises(ValueError, match=r"query must have embed_dim 8 features"): m(Tensor.zeros(3, 2, 6), x, x)
  with pytest.raises(ValueError, match=r"output_size \(12, 12\) cannot be reached"):
    nn.ConvTranspose2d(2, 2, 3, stride=2)(Tensor.zeros(1, 2, 4, 4), output_size=(12, 12))
