"""ONNX recurrent ops RNN, GRU and LSTM: both layouts, the three directions, sequence_lens, initial states, peepholes,
clip, input_forget, linear_before_reset and the named activations with their alpha/beta. The time loop is unrolled into
the Tensor graph."""
from __future__ import annotations
from lucidgrad import Tensor, dtypes
from lucidgrad.onnx.ops import onnx_op
from lucidgrad.onnx.ops.common import given

# name -> (number of alpha/beta values it takes, fn(x, alpha, beta))
_ACTS = {
  "relu": (0, lambda x, a, b: x.relu()), "tanh": (0, lambda x, a, b: x.tanh()), "sigmoid": (0, lambda x, a, b: x.sigmoid()),
  "softsign": (0, lambda x, a, b: x.softsign()), "softplus": (0, lambda x, a, b: x.softplus()),
  "affine": (2, lambda x, a, b: x * a + b), "leakyrelu": (1, lambda x, a, b: (x >= 0).where(x, x * a)),
  "thresholdedrelu": (1, lambda x, a, b: (x > a).where(x, Tensor.zeros_like(x))), "scaledtanh": (2, lambda x, a, b: (x * b).tanh() * a),
  "hardsigmoid": (2, lambda x, a, b: (x * a + b).clip(0, 1)), "elu": (1, lambda x, a, b: (x >= 0).where(x, (x.exp() - 1) * a)),
}
_DEFAULT_ALPHA = {"leakyrelu": 0.01, "thresholdedrelu": 1.0, "hardsigmoid": 0.2, "elu": 1.0, "affine": 1.0, "scaledtanh": 1.0}
_DEFAULT_BETA = {"hardsigmoid": 0.5, "affine": 0.0, "scaledtanh": 1.0}

def _activations(attrs, defaults: list[str], dirs: int, op: str) -> list[list]:
  """Per direction, the activation functions (as callables) in the op's order."""
  names = [n.lower() for n in attrs.get("activations", defaults * dirs)]
  alphas, betas = list(attrs.get("activation_alpha", [])), list(attrs.get("activation_beta", []))
  fns = []
  for n in names:
    if n not in _ACTS: raise NotImplementedError(f"ONNX {op}: activation {n!r} is not supported")
    k, fn = _ACTS[n]
    a = alphas.pop(0) if k >= 1 and alphas else _DEFAULT_ALPHA.get(n, 0.0)
    b = betas.pop(0) if k >= 2 and betas else _DEFAULT_BETA.get(n, 0.0)
    fns.append(lambda x, fn=fn, a=a, b=b: fn(x, a, b))
  per = len(defaults)
  return [fns[d * per:(d + 1) * per] for d in range(dirs)]

def _recurrent(op: str, gates: int, states: int, defaults: list[str], cell):
  def run(ctx, inputs, attrs):
    x, w, r = inputs[:3]
    b, lens, h0 = given(inputs, 3), given(inputs, 4), given(inputs, 5)
    c0, p = (given(inputs, 6), given(inputs, 7)) if states == 2 else (None, None)
    layout, direction = attrs.get("layout", 0), attrs.get("direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    if layout: x = x.permute(1, 0, 2)
    S, N = x.shape[:2]
    H = attrs.get("hidden_size", r.shape[-1])
    acts = _activations(attrs, defaults, dirs, op)
    clip = attrs.get("clip")
    mask = None
    if lens is not None:  # step t of sequence n counts while t < lens[n]
      mask = (Tensor.arange(S, device=x.device).reshape(S, 1, 1) < lens.cast(dtypes.int64).reshape(1, N, 1))
    ys, hs, cs = [], [], []
    for d in range(dirs):
      reverse = direction == "reverse" or d == 1
      wd, rd = w[d], r[d]
      bd = b[d] if b is not None else Tensor.zeros(2 * gates * H, dtype=x.dtype, device=x.device)
      h = h0[d] if h0 is not None else Tensor.zeros(N, H, dtype=x.dtype, device=x.device)
      c = (c0[d] if c0 is not None else Tensor.zeros(N, H, dtype=x.dtype, device=x.device)) if states == 2 else None
      pd = p[d] if p is not None else None
      xw = x @ wd.T + bd[:gates * H]   # the input projections of every step at once
      out = [None] * S
      for t in (range(S - 1, -1, -1) if reverse else range(S)):
        nh, nc = cell(xw[t], h, c, rd, bd[gates * H:], pd, acts[d], clip, attrs, H)
        if mask is not None:  # past a sequence's end: the state stays, the output is 0
          m = mask[t]
          nh = m.where(nh, h)
          if nc is not None: nc = m.where(nc, c)
          out[t] = m.where(nh, Tensor.zeros_like(nh))
        else: out[t] = nh
        h, c = nh, nc
      ys.append(Tensor.stack(*out, dim=0)); hs.append(h); cs.append(c)
    y, yh = Tensor.stack(*ys, dim=1), Tensor.stack(*hs, dim=0)   # (S, dirs, N, H), (dirs, N, H)
    yc = Tensor.stack(*cs, dim=0) if states == 2 else None
    if layout: y, yh, yc = y.permute(2, 0, 1, 3), yh.permute(1, 0, 2), (yc.permute(1, 0, 2) if yc is not None else None)
    return [y, yh, yc] if states == 2 else [y, yh]
  return run

def _clip(x: Tensor, clip) -> Tensor: return x if clip is None else x.clip(-clip, clip)

def _rnn_cell(xw, h, c, r, rb, p, acts, clip, attrs, H):
  return acts[0](_clip(xw + h @ r.T + rb, clip)), None

def _gru_cell(xw, h, c, r, rb, p, acts, clip, attrs, H):
  f, g = acts
  xz, xr, xh = xw[:, :H], xw[:, H:2 * H], xw[:, 2 * H:]
  rz, rr, rh = r[:H], r[H:2 * H], r[2 * H:]
  bz, br, bh = rb[:H], rb[H:2 * H], rb[2 * H:]
  z = f(_clip(xz + h @ rz.T + bz, clip))
  rt = f(_clip(xr + h @ rr.T + br, clip))
  hh = g(_clip(xh + (rt * (h @ rh.T + bh) if attrs.get("linear_before_reset", 0) else (rt * h) @ rh.T + bh), clip))
  return (1 - z) * hh + z * h, None

def _lstm_cell(xw, h, c, r, rb, p, acts, clip, attrs, H):
  f, g, hf = acts
  s = xw + h @ r.T + rb
  i_, o_, f_, c_ = s[:, :H], s[:, H:2 * H], s[:, 2 * H:3 * H], s[:, 3 * H:]
  pi, po, pf = (p[:H], p[H:2 * H], p[2 * H:]) if p is not None else (None, None, None)
  i = f(_clip(i_ + c * pi if pi is not None else i_, clip))
  fg = f(_clip(f_ + c * pf if pf is not None else f_, clip))
  if attrs.get("input_forget", 0): fg = 1 - i
  nc = fg * c + i * g(_clip(c_, clip))
  o = f(_clip(o_ + nc * po if po is not None else o_, clip))
  return o * hf(nc), nc

onnx_op("RNN")(_recurrent("RNN", 1, 1, ["Tanh"], _rnn_cell))
onnx_op("GRU")(_recurrent("GRU", 3, 1, ["Sigmoid", "Tanh"], _gru_cell))
onnx_op("LSTM")(_recurrent("LSTM", 4, 2, ["Sigmoid", "Tanh", "Tanh"], _lstm_cell))
