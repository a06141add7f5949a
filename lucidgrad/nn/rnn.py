"""Recurrent layers: torch.nn's RNN (tanh or relu), LSTM (with proj_size) and GRU -- stacked, bidirectional, batch_first,
dropout between layers -- and the one-step cells RNNCell, LSTMCell and GRUCell. Parameters carry torch's names, shapes,
gate order and initial distribution, so a torch state dict loads 1:1. Built on the public Tensor API only.

A layer projects its whole input sequence with one matmul (x W_ih^T + b_ih, b_hh folded in where the cell allows), then
runs the recurrence one step at a time (h W_hh^T and the gates), and stacks the steps' outputs once at the end."""
from __future__ import annotations
import math, numbers, warnings
from lucidgrad import Tensor
from lucidgrad.nn import Layer, _init, _uniform

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}

def _step(mode: str, xg: Tensor, state: tuple[Tensor, ...], w_hh: Tensor, b_hh: Tensor | None, w_hr: Tensor | None = None) -> tuple[Tensor, ...]:
  """One step of a cell: the new state ((h,), or (h, c) for an LSTM) from xg, the input's projection x W_ih^T + b_ih
  (plus b_hh where b_hh is None here), and the previous state. The gates are stacked in torch's order: LSTM i, f, g, o;
  GRU r, z, n, whose n gate multiplies r by h W_hn^T + b_hn (so a GRU can't fold b_hh into the projection)."""
  h = state[0]
  hg = h @ w_hh.T
  if b_hh is not None: hg = hg + b_hh
  if mode == "GRU":
    (xr, xz, xn), (hr, hz, hn) = xg.chunk(3, -1), hg.chunk(3, -1)
    r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
    n = (xn + r * hn).tanh()
    return ((1 - z) * n + z * h,)
  g = xg + hg
  if mode == "LSTM":
    i, f, gc, o = g.chunk(4, -1)
    c = f.sigmoid() * state[1] + i.sigmoid() * gc.tanh()
    h = o.sigmoid() * c.tanh()
    return (h if w_hr is None else h @ w_hr.T, c)
  return (g.tanh() if mode == "RNN_TANH" else g.relu(),)

def _check_sizes(name: str, least: int, **sizes) -> None:
  for k, v in sizes.items():
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < least:
      raise ValueError(f"{name}: {k} must be an integer of at least {least}, got {v!r}")

def _check_input(who: str, x, ranks: tuple[int, ...], features: int, dtype, shapes: str) -> None:
  """A TypeError or ValueError naming what is wrong with x and the shape expected (`shapes`)."""
  if not isinstance(x, Tensor): raise TypeError(f"{who}: input must be a Tensor, got {type(x).__name__}")
  if not x.dtype.is_float(): raise TypeError(f"{who}: input must be a floating-point tensor, got {x.dtype}")
  if x.dtype != dtype: raise TypeError(f"{who}: input dtype {x.dtype} does not match the weights' dtype {dtype}; cast the input with .to({dtype})")
  if x.ndim not in ranks or x.shape[-1] != features: raise ValueError(f"{who}: expected input {shapes}, got shape {x.shape}")

def _check_state(who: str, what: str, t, shape: tuple[int, ...], dtype) -> None:
  if not isinstance(t, Tensor): raise TypeError(f"{who}: {what} must be a Tensor, got {type(t).__name__}")
  if t.shape != shape: raise ValueError(f"{who}: expected {what} of shape {shape}, got {t.shape}")
  if t.dtype != dtype: raise TypeError(f"{who}: {what} dtype {t.dtype} does not match the weights' dtype {dtype}")

# ---------------------------------------------------------------- multi-layer

class RNNBase(Layer):
  """The stacked recurrent layer of `mode` (RNN_TANH, RNN_RELU, LSTM or GRU), as torch.nn.RNNBase. For each layer k and
  direction, weight_ih_l{k} (G*H, in), weight_hh_l{k} (G*H, H_out), bias_ih_l{k} and bias_hh_l{k} (G*H), and with an
  LSTM's proj_size weight_hr_l{k} (proj_size, H); the backward direction's names end in `_reverse`. G is the gate count
  (1, 4, 3); `in` is input_size for layer 0, else num_directions * H_out. All uniform in +-1/sqrt(hidden_size)."""
  def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True, batch_first: bool = False,
               dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None):
    name = {"RNN_TANH": "RNN", "RNN_RELU": "RNN"}.get(mode, mode)
    if mode not in _GATES: raise ValueError(f"RNNBase: mode must be one of {list(_GATES)}, got {mode!r}")
    _check_sizes(name, 1, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1:
      raise ValueError(f"{name}: dropout must be a number in [0, 1] (the probability an element is zeroed), got {dropout!r}")
    if dropout > 0 and num_layers == 1:
      warnings.warn(f"{name}: dropout={dropout} with num_layers=1 does nothing: dropout is applied between layers, after all but the last", stacklevel=3)
    if not isinstance(proj_size, numbers.Integral) or proj_size < 0: raise ValueError(f"{name}: proj_size must be a non-negative integer, got {proj_size!r}")
    if proj_size and mode != "LSTM": raise ValueError(f"{name}: proj_size is only supported by LSTM, got proj_size={proj_size}")
    if proj_size >= hidden_size: raise ValueError(f"{name}: proj_size ({proj_size}) must be smaller than hidden_size ({hidden_size})")
    self.mode, self.input_size, self.hidden_size, self.num_layers = mode, input_size, hidden_size, num_layers
    self.bias, self.batch_first, self.dropout, self.bidirectional, self.proj_size = bias, batch_first, float(dropout), bidirectional, proj_size
    D, G, H_out = 2 if bidirectional else 1, _GATES[mode], proj_size or hidden_size
    bound = 1 / math.sqrt(hidden_size)
    self._flat_weights_names: list[str] = []
    for k in range(num_layers):
      for d in range(D):
        sfx, fan = f"_l{k}{'_reverse' if d else ''}", input_size if k == 0 else D * H_out
        shapes = {"weight_ih": (G * hidden_size, fan), "weight_hh": (G * hidden_size, H_out)}
        if bias: shapes.update(bias_ih=(G * hidden_size,), bias_hh=(G * hidden_size,))
        if proj_size: shapes["weight_hr"] = (proj_size, hidden_size)
        for n, shape in shapes.items():
          setattr(self, n + sfx, _uniform(shape, bound, dtype, device))
          self._flat_weights_names.append(n + sfx)
    _init(self, self._flat_weights_names)

  @property
  def all_weights(self) -> list[list[Tensor]]:
    """The parameters per layer and direction, in torch's order (w_ih, w_hh[, b_ih, b_hh][, w_hr])."""
    per = len(self._flat_weights_names) // (self.num_layers * (2 if self.bidirectional else 1))
    ws = [getattr(self, n) for n in self._flat_weights_names]
    return [ws[i:i + per] for i in range(0, len(ws), per)]

  def flatten_parameters(self) -> None:
    """A no-op, for code written for torch's cuDNN path: the weights are kept as they are."""

  def extra_repr(self) -> str:
    s = f"{self.input_size}, {self.hidden_size}"
    if self.proj_size: s += f", proj_size={self.proj_size}"
    if self.num_layers != 1: s += f", num_layers={self.num_layers}"
    if self.bias is not True: s += f", bias={self.bias}"
    if self.batch_first is not False: s += f", batch_first={self.batch_first}"
    if self.dropout != 0: s += f", dropout={self.dropout}"
    if self.bidirectional is not False: s += f", bidirectional={self.bidirectional}"
    return s

  def _weights(self, k: int, d: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
    sfx = f"_l{k}{'_reverse' if d else ''}"
    return tuple(getattr(self, n + sfx, None) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"))  # type: ignore[return-value]

  def _run(self, x: Tensor, hx: list[tuple[Tensor, ...]]) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
    """x (L, N, in) time-major through every layer and direction from the states hx (one tuple per layer*D + d);
    returns the last layer's output (L, N, D*H_out) and the final states in the same order."""
    D, L, finals = 2 if self.bidirectional else 1, x.shape[0], []
    for k in range(self.num_layers):
      if k > 0: x = x.dropout(self.dropout, training=self.training)
      outs = []
      for d in range(D):
        w_ih, w_hh, b_ih, b_hh, w_hr = self._weights(k, d)
        fold = self.mode != "GRU"  # a GRU's b_hn sits inside the r product, so its b_hh stays in the step
        xg = x @ w_ih.T  # every timestep's input projection in one matmul
        if b_ih is not None: xg = xg + (b_ih + b_hh if fold else b_ih)
        state, steps = hx[k * D + d], []
        for t in (reversed(range(L)) if d else range(L)):
          state = _step(self.mode, xg[t], state, w_hh, None if fold else b_hh, w_hr)
          steps.append(state[0])
        outs.append(Tensor.stack(*(steps[::-1] if d else steps)))
        finals.append(state)
      x = outs[0] if D == 1 else outs[0].cat(outs[1], dim=-1)
    return x, finals

  def forward(self, input: Tensor, hx=None):
    """(output, h_n) -- (output, (h_n, c_n)) for an LSTM -- for input (L, N, input_size), (N, L, input_size) with
    batch_first, or unbatched (L, input_size). hx (h_0, or (h_0, c_0)) is (D*num_layers, N, H_out), or
    (D*num_layers, H_out) unbatched, zeros when None; c_0 has hidden_size features. output is (L, N, D*H_out) (batch
    first with batch_first); h_n and c_n have h_0's and c_0's shapes, never batch first. H_out is proj_size if set."""
    name, D, H, H_out = type(self).__name__, 2 if self.bidirectional else 1, self.hidden_size, self.proj_size or self.hidden_size
    dtype = self._weights(0, 0)[0].dtype
    shapes = f"(L, {self.input_size}) unbatched or {'(N, L' if self.batch_first else '(L, N'}, {self.input_size})"
    _check_input(name, input, (2, 3), self.input_size, dtype, shapes)
    batched = input.ndim == 3
    x = input.transpose(0, 1) if batched and self.batch_first else input
    if not batched: x = x.unsqueeze(1)
    L, N, S = x.shape[0], x.shape[1], D * self.num_layers
    if L == 0: raise ValueError(f"{name}: the input sequence must be at least 1 long, got input shape {input.shape}")
    lstm = self.mode == "LSTM"
    if hx is None: hs = [Tensor.zeros(S, N, n, dtype=dtype, device=x.device) for n in ((H_out, H) if lstm else (H_out,))]
    else:
      if lstm and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
        raise TypeError(f"{name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
      hs = list(hx) if lstm else [hx]
      for what, t, n in zip(("h_0", "c_0"), hs, (H_out, H)):
        _check_state(name, what, t, (S, N, n) if batched else (S, n), dtype)
      if not batched: hs = [t.unsqueeze(1) for t in hs]
    out, finals = self._run(x, [tuple(t[i] for t in hs) for i in range(S)])
    if batched and self.batch_first: out = out.transpose(0, 1)
    h_n = [Tensor.stack(*[f[j] for f in finals]) for j in range(len(hs))]
    if not batched: out, h_n = out.squeeze(1), [t.squeeze(1) for t in h_n]
    return (out, (h_n[0], h_n[1])) if lstm else (out, h_n[0])

class RNN(RNNBase):
  """torch.nn.RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), or relu with nonlinearity='relu'; stacked
  num_layers deep, bidirectional on request, dropout between layers in training."""
  def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh", bias: bool = True,
               batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None):
    if nonlinearity not in ("tanh", "relu"): raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    self.nonlinearity = nonlinearity
    super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers, bias, batch_first,
                     dropout, bidirectional, 0, device, dtype)

class LSTM(RNNBase):
  """torch.nn.LSTM: gates i, f, g, o (stacked in that order in the weights); c_t = f c_{t-1} + i g, h_t = o tanh(c_t),
  projected by weight_hr (proj_size, hidden_size) when proj_size > 0. Returns (output, (h_n, c_n))."""
  def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True, batch_first: bool = False,
               dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None):
    super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size, device, dtype)

class GRU(RNNBase):
  """torch.nn.GRU: gates r, z, n (in that order in the weights); n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn)),
  h_t = (1 - z) n + z h_{t-1}."""
  def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True, batch_first: bool = False,
               dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None):
    super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0, device, dtype)

# ---------------------------------------------------------------- cells

class RNNCellBase(Layer):
  """One step of a recurrent cell, as torch.nn.RNNCellBase: weight_ih (G*H, input_size), weight_hh (G*H, H), bias_ih and
  bias_hh (G*H), all uniform in +-1/sqrt(H)."""
  mode = "RNN_TANH"
  def __init__(self, input_size: int, hidden_size: int, bias: bool, device, dtype):
    _check_sizes(type(self).__name__, 0, input_size=input_size, hidden_size=hidden_size)
    self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
    G, b = _GATES[self.mode], 1 / math.sqrt(hidden_size) if hidden_size else 0.0
    self.weight_ih = _uniform((G * hidden_size, input_size), b, dtype, device)
    self.weight_hh = _uniform((G * hidden_size, hidden_size), b, dtype, device)
    self.bias_ih = _uniform((G * hidden_size,), b, dtype, device) if bias else None
    self.bias_hh = _uniform((G * hidden_size,), b, dtype, device) if bias else None
    _init(self, ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

  def extra_repr(self) -> str:
    s = f"{self.input_size}, {self.hidden_size}"
    if self.bias is not True: s += f", bias={self.bias}"
    if getattr(self, "nonlinearity", "tanh") != "tanh": s += f", nonlinearity={self.nonlinearity}"
    return s

  def _cell(self, input: Tensor, hx: tuple[Tensor | None, ...]) -> tuple[Tensor, ...]:
    """The new state for input (N, input_size) or (input_size,) from hx's tensors (None for zeros)."""
    who, H = f"{type(self).__name__}({self.input_size}, {self.hidden_size})", self.hidden_size
    dtype = self.weight_ih.dtype
    _check_input(who, input, (1, 2), self.input_size, dtype, f"(N, {self.input_size}) or ({self.input_size},)")
    lead = input.shape[:-1]
    state = tuple(Tensor.zeros(*lead, H, dtype=dtype, device=input.device) if t is None else t for t in hx)
    for what, t in zip(("h", "c") if len(hx) == 2 else ("hx",), state): _check_state(who, what, t, (*lead, H), dtype)
    fold = self.mode != "GRU"
    xg = input @ self.weight_ih.T
    if self.bias_ih is not None: xg = xg + (self.bias_ih + self.bias_hh if fold else self.bias_ih)
    return _step(self.mode, xg, state, self.weight_hh, None if fold else self.bias_hh)

class RNNCell(RNNCellBase):
  """torch.nn.RNNCell: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh), or relu with nonlinearity='relu'."""
  def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh", device=None, dtype=None):
    if nonlinearity not in ("tanh", "relu"): raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    self.nonlinearity, self.mode = nonlinearity, "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
    super().__init__(input_size, hidden_size, bias, device, dtype)
  def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
    """h' for input (N, input_size) or unbatched (input_size,) and hx of shape (N, hidden_size) or (hidden_size,), zeros when None."""
    return self._cell(input, (hx,))[0]

class LSTMCell(RNNCellBase):
  """torch.nn.LSTMCell: the gates stacked in torch's order (input, forget, cell, output)."""
  mode = "LSTM"
  def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
    super().__init__(input_size, hidden_size, bias, device, dtype)
  def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """(h', c') for input (N, input_size) or unbatched (input_size,) and hx = (h, c) of shape (N, hidden_size) or (hidden_size,), zeros when None."""
    if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
      raise TypeError(f"LSTMCell({self.input_size}, {self.hidden_size}): hx must be a tuple (h, c), got {type(hx).__name__}")
    h, c = self._cell(input, (None, None) if hx is None else tuple(hx))
    return h, c

class GRUCell(RNNCellBase):
  """torch.nn.GRUCell: gates r, z, n stacked in that order; n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn)), h' = (1 - z) n + z h."""
  mode = "GRU"
  def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
    super().__init__(input_size, hidden_size, bias, device, dtype)
  def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
    """h' for input (N, input_size) or unbatched (input_size,) and hx of shape (N, hidden_size) or (hidden_size,), zeros when None."""
    return self._cell(input, (hx,))[0]
