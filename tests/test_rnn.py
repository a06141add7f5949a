"""lucidgrad.nn.rnn's RNN, LSTM, GRU and their cells held to torch.nn's on the CPU with the same weights (torch's random
initialisation copied in by name, which must be torch's state dict keys): the output and final states, and the
gradients of a loss of all of them with respect to the input, the initial state and every weight; dropout between
layers; the initialisation; and the errors a user gets for bad input. torch runs in float64, lucidgrad in float32.
The sizes are one small set (input 3, hidden 4, batch 2, length 3) so that the kernels are shared between the tests."""
import numpy as np
import pytest
import torch
from lucidgrad import Tensor, dtypes
from lucidgrad import nn
import lucidgrad.nn.rnn as lg_rnn
from lucidgrad.nn.rnn import RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell
from lucidgrad.nn.state import get_state_dict
from conftest import rnd

I, H, N, L = 3, 4, 2, 3


@pytest.fixture(autouse=True)
def seeded():
  Tensor.manual_seed(0)
  torch.manual_seed(0)

def copy_from_torch(th: torch.nn.Module, lg) -> None:
  """torch's parameters written into the lucidgrad layer's tensors of the same names, which must be the same set in the same order."""
  ours, theirs = get_state_dict(lg), th.state_dict()
  assert list(ours) == list(theirs), f"tensor names {list(ours)}, torch has {list(theirs)}"
  for k, v in theirs.items():
    assert ours[k].shape == tuple(v.shape), f"{k}: shape {ours[k].shape}, torch {tuple(v.shape)}"
    ours[k].assign(Tensor(v.detach().numpy()))
  Tensor.realize(*ours.values())

def flat(out) -> list:
  return [t for o in (out if isinstance(out, tuple) else (out,)) for t in (o if isinstance(o, tuple) else (o,))]

def compare(th, lg, x: np.ndarray, hx: list[np.ndarray] | None = None, view=None, train=False, rtol=1e-5, atol=2e-6):
  """Both layers on input x (through `view`, e.g. a transpose, applied to either library's tensor) and the initial
  state hx (a list: [h] or [h, c]); every output and final state compared, then the gradients of sum(out_i * g_i) with
  respect to x, hx and every parameter."""
  th.double().train(train)
  copy_from_torch(th, lg)
  lstm = isinstance(th, (torch.nn.LSTM, torch.nn.LSTMCell))
  pack = (lambda ts: None if ts is None else tuple(ts) if lstm else ts[0])
  view = view or (lambda t: t)
  tx, lx = torch.tensor(x, dtype=torch.float64, requires_grad=True), Tensor(x, requires_grad=True)
  thx = None if hx is None else [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in hx]
  lhx = None if hx is None else [Tensor(a, requires_grad=True) for a in hx]
  outs_t = flat(th(view(tx), pack(thx)))
  lg.training = train
  outs_l = flat(lg(view(lx), pack(lhx)))
  assert [o.shape for o in outs_l] == [tuple(o.shape) for o in outs_t]
  assert all(o.dtype == dtypes.float32 for o in outs_l)
  gs = [rnd(99 + i, *o.shape) for i, o in enumerate(outs_t)]
  sum((o * torch.tensor(g, dtype=o.dtype)).sum() for o, g in zip(outs_t, gs)).backward()
  sum((o * Tensor(g)).sum() for o, g in zip(outs_l, gs)).backward()
  params, th_params = get_state_dict(lg), dict(th.named_parameters())
  Tensor.realize(*outs_l, lx.grad, *[t.grad for t in lhx or []], *[p.grad for p in params.values()])
  for i, (o, ot) in enumerate(zip(outs_l, outs_t)): np.testing.assert_allclose(o.numpy(), ot.detach().numpy(), rtol=rtol, atol=atol, err_msg=f"output {i}")
  np.testing.assert_allclose(lx.grad.numpy(), tx.grad.numpy(), rtol=rtol, atol=atol, err_msg="gradient of the input")
  for i, (a, b) in enumerate(zip(lhx or [], thx or [])):
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=rtol, atol=atol, err_msg=f"gradient of hx[{i}]")
  for k, p in params.items(): np.testing.assert_allclose(p.grad.numpy(), th_params[k].grad.numpy(), rtol=rtol, atol=atol, err_msg=f"gradient of {k}")

def states(S: int, lead: tuple, lstm: bool, proj: int = 0, seed: int = 10) -> list[np.ndarray]:
  lead = (S, *lead) if S else lead
  return [rnd(seed, *lead, proj or H)] + ([rnd(seed + 1, *lead, H)] if lstm else [])

# ---------------------------------------------------------------- multi-layer

def test_lstm_two_layers_bidirectional_given_hx():
  compare(torch.nn.LSTM(I, H, num_layers=2, bidirectional=True), LSTM(I, H, num_layers=2, bidirectional=True), rnd(0, L, N, I),
          states(4, (N,), True))

def test_gru_two_layers_batch_first_given_hx_non_contiguous_input():
  # the input is a transposed view of a (L, N, I) array: (N, L, I) batch first, strided
  compare(torch.nn.GRU(I, H, num_layers=2, batch_first=True), GRU(I, H, num_layers=2, batch_first=True), rnd(1, L, N, I),
          states(2, (N,), False), view=lambda t: t.transpose(0, 1))

def test_rnn_relu_bidirectional_given_hx_without_bias():
  compare(torch.nn.RNN(I, H, nonlinearity="relu", bias=False, bidirectional=True),
          RNN(I, H, nonlinearity="relu", bias=False, bidirectional=True), rnd(2, L, N, I), states(2, (N,), False))

def test_rnn_tanh_unbatched_batch_first():
  # an unbatched input is (L, H_in) whatever batch_first says
  compare(torch.nn.RNN(I, H, batch_first=True), RNN(I, H, batch_first=True), rnd(3, L, I))

def test_gru_unbatched_given_hx():
  compare(torch.nn.GRU(I, H), GRU(I, H), rnd(4, L, I), states(1, (), False))

def test_lstm_projection_two_layers_unbatched_given_hx():
  # layer 2 takes the projected (proj_size) output of layer 1; h_0 has proj_size features, c_0 hidden_size
  compare(torch.nn.LSTM(I, H, num_layers=2, proj_size=2), LSTM(I, H, num_layers=2, proj_size=2), rnd(5, L, I), states(2, (), True, proj=2))

def test_dropout_is_between_layers_and_only_in_training():
  x = Tensor(rnd(7, L, N, I))
  m = RNN(I, H, num_layers=2, dropout=0.0).eval()
  ref, _ = m(x)
  m.training = True
  np.testing.assert_array_equal(m(x)[0].numpy(), ref.numpy())  # dropout=0 in training: eval's output exactly
  m.dropout = 0.5
  assert np.abs(m(x)[0].numpy() - ref.numpy()).max() > 1e-3  # dropped in training...
  m.training = False
  np.testing.assert_array_equal(m(x)[0].numpy(), ref.numpy())  # ... not in eval
  with nn.train(): assert np.abs(m(x)[0].numpy() - ref.numpy()).max() > 1e-3
  # dropout=1 drops the whole input of layer 2 and none of layer 1's: deterministic, so held to torch
  compare(torch.nn.RNN(I, H, num_layers=2, dropout=1.0), RNN(I, H, num_layers=2, dropout=1.0), rnd(8, L, N, I), train=True)

def test_empty_batch():
  for m in (GRU(I, H), LSTM(I, H)):
    out, hn = m(Tensor.zeros(L, 0, I))
    h_n = hn[0] if isinstance(hn, tuple) else hn
    assert out.shape == (L, 0, H) and h_n.shape == (1, 0, H) and out.numpy().shape == (L, 0, H)

# ---------------------------------------------------------------- cells

@pytest.mark.parametrize("make,lead,given", [
  (lambda m: m.RNNCell(I, H), (N,), True),
  (lambda m: m.RNNCell(I, H, nonlinearity="relu", bias=False), (), False),
  (lambda m: m.LSTMCell(I, H), (N,), True),
  (lambda m: m.LSTMCell(I, H), (), False),
  (lambda m: m.GRUCell(I, H), (N,), True),
  (lambda m: m.GRUCell(I, H, bias=False), (), True),
], ids=["rnn", "rnn_relu_unbatched", "lstm", "lstm_unbatched", "gru", "gru_unbatched"])
def test_cell_matches_torch(make, lead, given):
  th, lg = make(torch.nn), make(lg_rnn)
  compare(th, lg, rnd(20, *lead, I), states(0, lead, isinstance(th, torch.nn.LSTMCell)) if given else None)

def test_gru_cell_float64():
  th, lg = torch.nn.GRUCell(I, H).double(), GRUCell(I, H, dtype=dtypes.float64)
  assert lg.weight_ih.dtype == dtypes.float64
  copy_from_torch(th, lg)
  x, h = rnd(21, N, I).astype(np.float64), rnd(22, N, H).astype(np.float64)
  out = lg(Tensor(x), Tensor(h))
  assert out.dtype == dtypes.float64
  np.testing.assert_allclose(out.numpy(), th(torch.tensor(x), torch.tensor(h)).detach().numpy(), rtol=1e-12)

def test_cells_run_a_sequence_like_the_layer():
  # an LSTMCell stepped by hand with the layer's weights gives the layer's output and final state
  m, cell = LSTM(I, H), LSTMCell(I, H)
  for a, b in (("weight_ih", "weight_ih_l0"), ("weight_hh", "weight_hh_l0"), ("bias_ih", "bias_ih_l0"), ("bias_hh", "bias_hh_l0")):
    getattr(cell, a).assign(getattr(m, b)).realize()
  x = Tensor(rnd(23, L, N, I))
  out, (h_n, c_n) = m(x)
  hc, hs = None, []
  for t in range(L):
    hc = cell(x[t], hc)
    hs.append(hc[0])
  np.testing.assert_allclose(out.numpy(), Tensor.stack(*hs).numpy(), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(c_n.numpy()[0], hc[1].numpy(), rtol=1e-6, atol=1e-7)

# ---------------------------------------------------------------- parameters

@pytest.mark.parametrize("make", [
  lambda m: m.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2),
  lambda m: m.GRU(I, H, num_layers=2, bias=False, batch_first=True, dropout=0.25),
  lambda m: m.RNN(I, H, nonlinearity="relu", bidirectional=True),
  lambda m: m.RNNCell(I, H, bias=False, nonlinearity="relu"),
  lambda m: m.LSTMCell(I, H),
  lambda m: m.GRUCell(I, H),
], ids=["lstm", "gru", "rnn", "rnncell", "lstmcell", "grucell"])
def test_parameters_are_torchs(make):
  th, lg = make(torch.nn), make(lg_rnn)
  ours, theirs = get_state_dict(lg), dict(th.named_parameters())
  assert [(k, t.shape) for k, t in ours.items()] == [(k, tuple(v.shape)) for k, v in theirs.items()]
  bound = 1 / np.sqrt(H)
  for k, t in ours.items():
    assert t.requires_grad and t.dtype == dtypes.float32, k
    a = t.numpy()
    assert np.abs(a).max() <= bound and np.abs(a).max() > 0.5 * bound and a.std() > 0.3 * bound, k  # uniform(+-1/sqrt(H))
  assert lg.extra_repr() == th.extra_repr()
  if hasattr(th, "all_weights"): assert [[w.shape for w in ws] for ws in lg.all_weights] == [[tuple(w.shape) for w in ws] for ws in th.all_weights]

def test_initialisation_follows_the_global_seed():
  a = get_state_dict(GRU(I, H, num_layers=2))
  Tensor.manual_seed(0)
  b = get_state_dict(GRU(I, H, num_layers=2))
  c = get_state_dict(GRU(I, H, num_layers=2))
  for k in a: np.testing.assert_array_equal(a[k].numpy(), b[k].numpy())
  assert not np.array_equal(b["weight_hh_l1"].numpy(), c["weight_hh_l1"].numpy())

# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("make,x,hx,err,match", [
  (lambda: LSTM(I, H), (L, N, I, 1), None, ValueError, r"LSTM: expected input \(L, 3\) unbatched or \(L, N, 3\), got shape \(3, 2, 3, 1\)"),
  (lambda: GRU(I, H, batch_first=True), (N, L, 5), None, ValueError, r"GRU: expected input \(L, 3\) unbatched or \(N, L, 3\), got shape \(2, 3, 5\)"),
  (lambda: RNN(I, H), (L,), None, ValueError, r"RNN: expected input .*got shape \(3,\)"),
  (lambda: GRU(I, H, num_layers=2), (L, N, I), [(1, N, H)], ValueError, r"GRU: expected h_0 of shape \(2, 2, 4\), got \(1, 2, 4\)"),
  (lambda: GRU(I, H), (L, I), [(1, N, H)], ValueError, r"GRU: expected h_0 of shape \(1, 4\), got \(1, 2, 4\)"),
  (lambda: LSTM(I, H, proj_size=2), (L, N, I), [(1, N, 2), (1, N, 2)], ValueError, r"LSTM: expected c_0 of shape \(1, 2, 4\), got \(1, 2, 2\)"),
  (lambda: LSTM(I, H), (L, N, I), (1, N, H), TypeError, r"LSTM: hx must be a tuple \(h_0, c_0\), got Tensor"),
  (lambda: LSTM(I, H), (0, N, I), None, ValueError, r"LSTM: the input sequence must be at least 1 long, got input shape \(0, 2, 3\)"),
  (lambda: RNNCell(I, H), (N, L, I), None, ValueError, r"RNNCell\(3, 4\): expected input \(N, 3\) or \(3,\), got shape \(2, 3, 3\)"),
  (lambda: GRUCell(I, H), (N, 2), None, ValueError, r"GRUCell\(3, 4\): expected input \(N, 3\) or \(3,\), got shape \(2, 2\)"),
  (lambda: GRUCell(I, H), (N, I), (H,), ValueError, r"GRUCell\(3, 4\): expected hx of shape \(2, 4\), got \(4,\)"),
  (lambda: LSTMCell(I, H), (I,), [(H,), (1, H)], ValueError, r"LSTMCell\(3, 4\): expected c of shape \(4,\), got \(1, 4\)"),
], ids=["rank", "features", "rank1", "h0_layers", "h0_unbatched", "c0", "lstm_hx_not_tuple", "empty_sequence", "cell_rank",
        "cell_features", "cell_hx", "cell_c"])
def test_bad_input_raises_a_clear_error(make, x, hx, err, match):
  h = None if hx is None else tuple(Tensor.zeros(*s) for s in hx) if isinstance(hx, list) else Tensor.zeros(*hx)
  if isinstance(h, tuple) and len(h) == 1: h = h[0]
  with pytest.raises(err, match=match): make()(Tensor.zeros(*x), h)

def test_bad_dtypes_raise_clear_errors():
  with pytest.raises(TypeError, match=r"GRU: input must be a floating-point tensor, got dtypes.int32"): GRU(I, H)(Tensor.zeros(L, N, I, dtype=dtypes.int32))
  with pytest.raises(TypeError, match=r"LSTM: input dtype dtypes.float64 does not match the weights' dtype dtypes.float32"):
    LSTM(I, H)(Tensor.zeros(L, N, I, dtype=dtypes.float64))
  with pytest.raises(TypeError, match=r"RNN: h_0 dtype dtypes.float16 does not match"): RNN(I, H)(Tensor.zeros(L, N, I), Tensor.zeros(1, N, H, dtype=dtypes.float16))
  with pytest.raises(TypeError, match=r"LSTMCell\(3, 4\): input must be a Tensor, got ndarray"): LSTMCell(I, H)(np.zeros((N, I), np.float32))

def test_bad_arguments_raise_clear_errors():
  with pytest.raises(ValueError, match=r"GRU: proj_size is only supported by LSTM"): lg_rnn.RNNBase("GRU", I, H, proj_size=2)
  with pytest.raises(ValueError, match=r"LSTM: proj_size \(4\) must be smaller than hidden_size \(4\)"): LSTM(I, H, proj_size=4)
  with pytest.raises(ValueError, match=r"LSTM: hidden_size must be an integer of at least 1, got 0"): LSTM(I, 0)
  with pytest.raises(ValueError, match=r"GRU: num_layers must be an integer of at least 1, got 1.5"): GRU(I, H, num_layers=1.5)
  with pytest.raises(ValueError, match=r"RNN: dropout must be a number in \[0, 1\].*got 1.5"): RNN(I, H, num_layers=2, dropout=1.5)
  with pytest.raises(ValueError, match=r"RNN: nonlinearity must be 'tanh' or 'relu', got 'gelu'"): RNN(I, H, nonlinearity="gelu")
  with pytest.raises(ValueError, match=r"RNNCell: nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"): RNNCell(I, H, nonlinearity="sigmoid")
  with pytest.warns(UserWarning, match=r"GRU: dropout=0.5 with num_layers=1 does nothing"): GRU(I, H, dropout=0.5)
