"""torch.nn.init: initialisers that overwrite a tensor in place (assign, realized at once, under no_grad) and return it,
with torch's names, arguments and distributions, drawing from lucidgrad's global generator (seed it with
Tensor.manual_seed; a torch `generator` argument is refused). calculate_gain and the fan computation are torch's."""
from __future__ import annotations
import math
import numpy as np
from lucidgrad import Tensor, no_grad

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_", "xavier_uniform_",
           "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_"]

_GAIN_ONE = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "sigmoid")

def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
  """torch.nn.init.calculate_gain: the gain that keeps activations' variance through `nonlinearity` -- 1 for linear
  layers and sigmoid, 5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + slope^2)) for leaky_relu (param, 0.01 if None), 3/4
  for selu."""
  if nonlinearity in _GAIN_ONE: return 1.0
  if nonlinearity == "tanh": return 5.0 / 3
  if nonlinearity == "relu": return math.sqrt(2.0)
  if nonlinearity == "leaky_relu":
    if param is None: slope = 0.01
    elif isinstance(param, (int, float)) and not isinstance(param, bool): slope = param
    else: raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
    return math.sqrt(2.0 / (1 + slope ** 2))
  if nonlinearity == "selu": return 3.0 / 4
  raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}; expected one of {[*_GAIN_ONE, 'tanh', 'relu', 'leaky_relu', 'selu']}")

def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
  """(fan_in, fan_out) of a weight (out, in, *kernel), as torch counts them: in * prod(kernel), out * prod(kernel)."""
  if tensor.ndim < 2: raise ValueError(f"fan in and fan out can not be computed for a tensor with fewer than 2 dimensions, got shape {tensor.shape}")
  receptive = math.prod(tensor.shape[2:])
  return tensor.shape[1] * receptive, tensor.shape[0] * receptive

def _fan(tensor: Tensor, mode: str, fn: str) -> int:
  if mode not in ("fan_in", "fan_out"): raise ValueError(f"{fn}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
  return _calculate_fan_in_and_fan_out(tensor)[0 if mode == "fan_in" else 1]

def _write(tensor: Tensor, make, fn: str, generator=None) -> Tensor:
  """tensor overwritten in place with make() (cast to its dtype), realized now; a zero-element tensor is left alone."""
  if not isinstance(tensor, Tensor): raise TypeError(f"{fn}: expected a Tensor, got a {type(tensor).__name__}")
  if generator is not None: raise TypeError(f"{fn}: a generator is not supported; seed the global one with Tensor.manual_seed")
  if tensor.numel() == 0: return tensor  # as torch: initialising an empty tensor does nothing
  with no_grad(): tensor.assign(make().cast(tensor.dtype)).realize()
  return tensor

def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
  """Fill tensor with U(a, b)."""
  return _write(tensor, lambda: Tensor.uniform(*tensor.shape, low=a, high=b, device=tensor.device), "uniform_", generator)

def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
  """Fill tensor with N(mean, std^2)."""
  return _write(tensor, lambda: Tensor.normal(*tensor.shape, mean=mean, std=std, device=tensor.device), "normal_", generator)

def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, generator=None) -> Tensor:
  """Fill tensor with N(mean, std^2) truncated to [a, b] (absolute bounds, as torch's)."""
  return _write(tensor, lambda: Tensor.trunc_normal(tensor.shape, mean, std, a, b, device=tensor.device), "trunc_normal_", generator)

def constant_(tensor: Tensor, val: float) -> Tensor:
  """Fill tensor with val."""
  return _write(tensor, lambda: Tensor.full(tensor.shape, val, device=tensor.device), "constant_")

def ones_(tensor: Tensor) -> Tensor:
  """Fill tensor with 1."""
  return constant_(tensor, 1.0)

def zeros_(tensor: Tensor) -> Tensor:
  """Fill tensor with 0."""
  return constant_(tensor, 0.0)

def eye_(tensor: Tensor) -> Tensor:
  """Fill a 2D tensor with the identity matrix (ones on the main diagonal)."""
  if tensor.ndim != 2: raise ValueError(f"eye_: only tensors with 2 dimensions are supported, got shape {tensor.shape}")
  return _write(tensor, lambda: Tensor.eye(*tensor.shape, device=tensor.device), "eye_")

def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
  """Fill a 3, 4 or 5-D convolution weight with the Dirac delta: the convolution passes each input channel (of each of
  `groups` groups) through to the output channel of the same number."""
  if tensor.ndim not in (3, 4, 5): raise ValueError(f"dirac_: only tensors with 3, 4, or 5 dimensions are supported, got shape {tensor.shape}")
  if groups < 1 or tensor.shape[0] % groups: raise ValueError(f"dirac_: dim 0 ({tensor.shape[0]}) must be divisible by groups ({groups})")
  per = tensor.shape[0] // groups
  w = np.zeros(tensor.shape, np.float64)
  centre = tuple(k // 2 for k in tensor.shape[2:])
  for g in range(groups):
    for d in range(min(per, tensor.shape[1])): w[(g * per + d, d, *centre)] = 1
  return _write(tensor, lambda: Tensor(w, device=tensor.device), "dirac_")

def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
  """Fill tensor with U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
  b = gain * math.sqrt(6.0 / sum(_calculate_fan_in_and_fan_out(tensor))) if tensor.numel() else 0.0
  return _write(tensor, lambda: Tensor.uniform(*tensor.shape, low=-b, high=b, device=tensor.device), "xavier_uniform_", generator)

def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
  """Fill tensor with N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
  std = gain * math.sqrt(2.0 / sum(_calculate_fan_in_and_fan_out(tensor))) if tensor.numel() else 0.0
  return _write(tensor, lambda: Tensor.normal(*tensor.shape, std=std, device=tensor.device), "xavier_normal_", generator)

def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None) -> Tensor:
  """Fill tensor with U(-b, b), b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a), fan by mode (He et al. 2015)."""
  if tensor.numel() == 0: return tensor
  b = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(tensor, mode, "kaiming_uniform_"))
  return _write(tensor, lambda: Tensor.uniform(*tensor.shape, low=-b, high=b, device=tensor.device), "kaiming_uniform_", generator)

def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None) -> Tensor:
  """Fill tensor with N(0, std^2), std = gain / sqrt(fan), gain = calculate_gain(nonlinearity, a), fan by mode."""
  if tensor.numel() == 0: return tensor
  std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode, "kaiming_normal_"))
  return _write(tensor, lambda: Tensor.normal(*tensor.shape, std=std, device=tensor.device), "kaiming_normal_", generator)

def orthogonal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
  """Fill tensor (2D or more; the trailing axes flattened) with a (semi-)orthogonal matrix times gain: the Q of a QR
  decomposition of a normal draw, its columns' signs fixed by R's diagonal (Saxe et al. 2013). The QR runs in NumPy."""
  if tensor.ndim < 2: raise ValueError(f"orthogonal_: only tensors with 2 or more dimensions are supported, got shape {tensor.shape}")
  if tensor.numel() == 0: return tensor
  rows, cols = tensor.shape[0], tensor.numel() // tensor.shape[0]
  def make() -> Tensor:
    flat = Tensor.normal(rows, cols, device=tensor.device).numpy().astype(np.float64)
    q, r = np.linalg.qr(flat.T if rows < cols else flat)
    q = q * np.sign(np.diag(r))
    return Tensor((q.T if rows < cols else q).reshape(tensor.shape) * gain, device=tensor.device)
  return _write(tensor, make, "orthogonal_", generator)
