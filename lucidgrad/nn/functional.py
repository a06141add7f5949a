"""torch.nn.functional for lucidgrad: `import lucidgrad.nn.functional as F`. Thin wrappers over the Tensor methods:
a name whose torch signature is the Tensor method's (input first, the same arguments in the same order) is one entry of
_SAME_AS_TENSOR, so a method added to Tensor later needs one entry; a function torch spells or orders differently
(dim=None rules, the legacy size_average/reduce arguments, extra keywords) or that has no Tensor method is written out
below. torch's `inplace` flags are accepted; the result is always a new tensor and the input is left as it is."""
from __future__ import annotations
import inspect, math, warnings
from typing import Callable
from lucidgrad import Tensor, dtypes

# name -> whether torch's function also takes `inplace` (after the method's own arguments)
_SAME_AS_TENSOR: dict[str, bool] = {
  # activations
  "relu": True, "relu6": True, "elu": True, "selu": True, "celu": True, "leaky_relu": True, "hardtanh": True, "hardswish": True,
  "hardsigmoid": True, "silu": True, "mish": True, "gelu": False, "softplus": False, "softsign": False, "logsigmoid": False,
  "sigmoid": False, "tanh": False,
  # dropout, convolution, pooling, normalisation
  "dropout": True, "conv1d": False, "conv2d": False, "conv3d": False, "conv_transpose1d": False, "conv_transpose2d": False,
  "conv_transpose3d": False, "max_pool1d": False, "max_pool2d": False, "max_pool3d": False, "avg_pool1d": False, "avg_pool2d": False,
  "avg_pool3d": False, "adaptive_avg_pool1d": False, "adaptive_avg_pool2d": False, "adaptive_avg_pool3d": False, "batch_norm": False,
  "layer_norm": False, "group_norm": False, "rms_norm": False,
  # the rest
  "scaled_dot_product_attention": False, "cosine_similarity": False, "one_hot": False,
}

def _from_tensor(name: str, takes_inplace: bool) -> Callable[..., Tensor]:
  """torch.nn.functional.<name> as Tensor.<name>(input, ...), with torch's trailing `inplace` accepted if it has one."""
  method = getattr(Tensor, name)
  params = list(inspect.signature(method).parameters.values())
  n = len(params) - 1
  def fn(input: Tensor, *args, **kwargs) -> Tensor:
    if not isinstance(input, Tensor): raise TypeError(f"{name}(): input must be a Tensor, got a {type(input).__name__}")
    if takes_inplace:
      kwargs.pop("inplace", None)
      if len(args) == n + 1: args = args[:n]  # inplace given by position
    return method(input, *args, **kwargs)
  fn.__name__ = fn.__qualname__ = name
  fn.__module__ = __name__
  fn.__doc__ = f"torch.nn.functional.{name}: Tensor.{name} of input. " + (inspect.getdoc(method) or "")
  extra = [inspect.Parameter("inplace", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=False)] if takes_inplace else []
  fn.__signature__ = inspect.Signature([params[0].replace(name="input", annotation="Tensor"), *params[1:], *extra])  # type: ignore[attr-defined]
  return fn

for _name, _inplace in _SAME_AS_TENSOR.items():
  if hasattr(Tensor, _name): globals()[_name] = _from_tensor(_name, _inplace)

# ---------------------------------------------------------------- activations torch spells differently

def _softmax_dim(x: Tensor, dim: int | None, name: str) -> int:
  """torch's rule for a softmax without dim (deprecated there): 0 for 0-, 1- and 3-D input, else 1."""
  if dim is not None: return dim
  warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an argument.", stacklevel=3)
  return 0 if x.ndim in (0, 1, 3) else 1

def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
  """torch.nn.functional.softmax: exp(x) / sum(exp(x)) along dim (cast to dtype first, if given)."""
  return (input if dtype is None else input.cast(dtype)).softmax(_softmax_dim(input, dim, "softmax"))

def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
  """torch.nn.functional.log_softmax: x - logsumexp(x) along dim (cast to dtype first, if given)."""
  return (input if dtype is None else input.cast(dtype)).log_softmax(_softmax_dim(input, dim, "log_softmax"))

def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
  """torch.nn.functional.softmin: softmax(-x) along dim."""
  return (-(input if dtype is None else input.cast(dtype))).softmax(_softmax_dim(input, dim, "softmin"))

def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
  """torch.nn.functional.threshold: x where x > threshold, else value."""
  return (input > threshold).where(input, value).cast(input.dtype)

def tanhshrink(input: Tensor) -> Tensor:
  """torch.nn.functional.tanhshrink: x - tanh(x)."""
  return input - input.tanh()

def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
  """torch.nn.functional.softshrink: x - lambd above lambd, x + lambd below -lambd, 0 between."""
  if lambd < 0: raise ValueError(f"softshrink: lambd must be at least 0, got {lambd}")
  return (input > lambd).where(input - lambd, (input < -lambd).where(input + lambd, 0)).cast(input.dtype)

def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
  """torch.nn.functional.hardshrink: x where |x| > lambd, else 0."""
  return (input.abs() > lambd).where(input, 0).cast(input.dtype)

def glu(input: Tensor, dim: int = -1) -> Tensor:
  """torch.nn.functional.glu: a * sigmoid(b) for the two halves a, b of input along dim."""
  if input.ndim == 0 or input.shape[dim] % 2:
    raise ValueError(f"glu: the size of dimension {dim} must be even, got input shape {input.shape}")
  a, b = input.chunk(2, dim)
  return a * b.sigmoid()

def prelu(input: Tensor, weight: Tensor) -> Tensor:
  """torch.nn.functional.prelu: x where x >= 0, else weight * x; weight has 1 element or one per channel (axis 1)."""
  if weight.numel() != 1:
    if input.ndim < 2 or input.shape[1] != weight.numel():
      raise ValueError(f"prelu: weight has {weight.numel()} elements but the input (shape {input.shape}) has "
                       f"{input.shape[1] if input.ndim >= 2 else 1} channels (axis 1)")
    weight = weight.reshape(-1, *([1] * (input.ndim - 2)))
  else: weight = weight.reshape(())
  return (input >= 0).where(input, weight * input)

# ---------------------------------------------------------------- dropout by channel

def _check_p(p: float, name: str) -> None:
  if not 0 <= p <= 1: raise ValueError(f"{name}: p must be between 0 and 1, got {p}")

def _channel_mask(input: Tensor, p: float, n: int, name: str) -> Tensor:
  """1 (kept) or 0 per channel of an (N, C, *n spatial) or unbatched (C, *n spatial) input, spread over the spatial axes."""
  if input.ndim not in (n + 1, n + 2):
    raise ValueError(f"{name}: expected {n + 1}D (unbatched) or {n + 2}D (batched) input, got input shape {input.shape}")
  shape = input.shape[:input.ndim - n] + (1,) * n
  return (Tensor.rand(*shape, device=input.device) >= p).cast(input.dtype)

def _dropout_nd(n: int):
  name = f"dropout{n}d"
  def fn(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    _check_p(p, name)
    if not training or p == 0: return input
    if p == 1: return input * 0
    return input * _channel_mask(input, p, n, name) * (1 / (1 - p))
  fn.__name__ = fn.__qualname__ = name
  fn.__doc__ = (f"torch.nn.functional.{name}: in training, zero each whole channel of an (N, C, {n} spatial) or (C, {n} spatial) "
                "input with probability p and scale the rest by 1/(1-p); the identity otherwise.")
  return fn
dropout1d, dropout2d, dropout3d = _dropout_nd(1), _dropout_nd(2), _dropout_nd(3)

_SELU_ALPHA_SCALE = 1.7580993408473766  # selu's scale * alpha: the value selu tends to for large negative inputs, negated

def _alpha(input: Tensor, keep: Tensor, p: float) -> Tensor:
  """The dropped values set to selu's negative saturation, then an affine map that keeps mean 0 and variance 1."""
  a = 1 / math.sqrt((_SELU_ALPHA_SCALE ** 2 * p + 1) * (1 - p))
  return (input * keep - _SELU_ALPHA_SCALE * (1 - keep)) * a + _SELU_ALPHA_SCALE * a * p

def alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False) -> Tensor:
  """torch.nn.functional.alpha_dropout: dropout for SELU networks; dropped elements take selu's negative saturation and
  everything is scaled and shifted so a zero-mean, unit-variance input keeps its mean and variance."""
  _check_p(p, "alpha_dropout")
  if not training or p == 0: return input
  if p == 1: return input * 0
  return _alpha(input, (Tensor.rand(*input.shape, device=input.device) >= p).cast(input.dtype), p)

def feature_alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False) -> Tensor:
  """torch.nn.functional.feature_alpha_dropout: alpha_dropout of whole channels (axis 1; unbatched inputs: axis 0)."""
  _check_p(p, "feature_alpha_dropout")
  if not training or p == 0: return input
  if p == 1: return input * 0
  if input.ndim < 2: raise ValueError(f"feature_alpha_dropout: expected at least 2D input, got input shape {input.shape}")
  return _alpha(input, _channel_mask(input, p, input.ndim - 2, "feature_alpha_dropout"), p)

# ---------------------------------------------------------------- linear, embedding, shapes

def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
  """torch.nn.functional.linear: input @ weight.T + bias, weight (out_features, in_features)."""
  if weight.ndim not in (1, 2) or input.ndim < 1 or input.shape[-1] != weight.shape[-1]:
    raise ValueError(f"linear: the input's last dimension must match the weight's (out_features, in_features), got input {input.shape} "
                     f"and weight {weight.shape}")
  out = input @ weight.T
  return out if bias is None else out + bias

def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
  """torch.nn.functional.embedding: the rows of weight at the integer indices in input, shape (*input.shape, dim).
  padding_idx's row gets no gradient; max_norm renormalises the looked-up rows of weight in place (realized now, as
  torch writes them); scale_grad_by_freq divides each row's gradient by how often the batch looks it up; sparse is
  accepted (the gradient is dense). An index out of range raises IndexError at the next host read."""
  if not isinstance(input, Tensor): raise TypeError(f"embedding: the indices must be an integer Tensor, got {type(input).__name__}")
  if input.dtype.is_float() or input.dtype == dtypes.bool: raise TypeError(f"embedding: the indices must be integers, got {input.dtype}")
  n = weight.shape[0]
  if padding_idx is not None:
    if not -n <= padding_idx < n: raise ValueError(f"embedding: padding_idx {padding_idx} must be within num_embeddings ({n})")
    padding_idx %= n
  if max_norm is not None:  # scale each looked-up row whose norm exceeds max_norm down to max_norm (over 1 + 1e-7)
    w = weight.detach()
    norms = w.vector_norm(norm_type, dim=1)
    seen = (input.flatten().reshape(-1, 1) == Tensor.arange(n, dtype=input.dtype, device=input.device)).sum(0) > 0
    scale = (seen & (norms > max_norm)).where(max_norm / (norms + 1e-7), 1.0)
    weight.assign(w * scale.reshape(-1, 1).cast(w.dtype)).realize()  # now, so the weight stays a plain leaf gradients reach
  out = input.embedding(weight)
  if scale_grad_by_freq:  # the same values; each row's gradient divided by how often the batch looks it up
    freq = (input.flatten().reshape(-1, 1) == Tensor.arange(n, dtype=input.dtype, device=input.device)).sum(0)
    out = out.detach() + (out - out.detach()) * freq[input].cast(out.dtype).unsqueeze(-1).reciprocal()
  if padding_idx is not None: out = (input == padding_idx).unsqueeze(-1).where(out.detach(), out)  # no gradient
  return out

def pad(input: Tensor, pad, mode: str = "constant", value: float | None = None) -> Tensor:
  """torch.nn.functional.pad: `pad` is torch's flat (left, right) pairs, last axis first; modes 'constant' (value, 0 if
  None), 'reflect', 'replicate', 'circular'."""
  return input.pad(tuple(pad), mode=mode, value=0.0 if value is None else value)

def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None,
                recompute_scale_factor: bool | None = None, antialias: bool = False) -> Tensor:
  """torch.nn.functional.interpolate over the spatial axes of (N, C, *spatial): 'nearest', 'nearest-exact', 'linear',
  'bilinear', 'trilinear'. recompute_scale_factor=True turns scale_factor into the output size first, as torch does."""
  if antialias: raise NotImplementedError("interpolate: antialias=True is not supported")
  if recompute_scale_factor and scale_factor is not None:
    n = input.ndim - 2
    sf = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * n
    size, scale_factor = [math.floor(s * f) for s, f in zip(input.shape[2:], sf)], None
  return input.interpolate(size, scale_factor, mode, align_corners)

def upsample(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None) -> Tensor:
  """torch.nn.functional.upsample (deprecated there): interpolate."""
  return interpolate(input, size, scale_factor, mode, align_corners)

def upsample_nearest(input: Tensor, size=None, scale_factor=None) -> Tensor:
  """torch.nn.functional.upsample_nearest: interpolate(mode='nearest')."""
  return interpolate(input, size, scale_factor, "nearest")

def upsample_bilinear(input: Tensor, size=None, scale_factor=None) -> Tensor:
  """torch.nn.functional.upsample_bilinear: interpolate(mode='bilinear', align_corners=True)."""
  return interpolate(input, size, scale_factor, "bilinear", align_corners=True)

def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out=None) -> Tensor:
  """torch.nn.functional.normalize: input divided by its p-norm along dim, the norm clamped to at least eps."""
  if out is not None: raise NotImplementedError("normalize: out= is not supported; use the returned tensor")
  return input / input.vector_norm(p, dim=dim, keepdim=True).clamp(eps)

def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
  """torch.nn.functional.pairwise_distance: the p-norm of x1 - x2 + eps along the last axis."""
  return (x1 - x2 + eps).vector_norm(p, dim=-1, keepdim=keepdim)

def _shuffle_check(input: Tensor, name: str) -> None:
  if input.ndim < 3: raise ValueError(f"{name}: expected input with at least 3 dimensions (*, C, H, W), got shape {input.shape}")

def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
  """torch.nn.functional.pixel_shuffle: (*, C*r*r, H, W) to (*, C, H*r, W*r)."""
  _shuffle_check(input, "pixel_shuffle")
  r, (*lead, c, h, w) = upscale_factor, input.shape
  if c % (r * r): raise ValueError(f"pixel_shuffle: the channels ({c}) must be divisible by upscale_factor squared ({r * r})")
  k = len(lead)
  x = input.reshape(*lead, c // (r * r), r, r, h, w)
  return x.permute(*range(k), k, k + 3, k + 1, k + 4, k + 2).reshape(*lead, c // (r * r), h * r, w * r)

def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
  """torch.nn.functional.pixel_unshuffle: (*, C, H*r, W*r) to (*, C*r*r, H, W)."""
  _shuffle_check(input, "pixel_unshuffle")
  r, (*lead, c, h, w) = downscale_factor, input.shape
  if h % r or w % r: raise ValueError(f"pixel_unshuffle: height {h} and width {w} must be divisible by downscale_factor {r}")
  k = len(lead)
  x = input.reshape(*lead, c, h // r, r, w // r, r)
  return x.permute(*range(k), k, k + 2, k + 4, k + 1, k + 3).reshape(*lead, c * r * r, h // r, w // r)

# ---------------------------------------------------------------- losses (torch keeps the legacy size_average/reduce)

def _reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
  """torch's legacy size_average/reduce pair, where given, mapped to a reduction string."""
  if size_average is None and reduce is None: return reduction
  size_average, reduce = size_average is not False, reduce is not False
  return "none" if not reduce else "mean" if size_average else "sum"

def _weighted(loss: Tensor, weight: Tensor | None, reduction: str, name: str, weighted_mean: bool) -> Tensor:
  """An elementwise loss times weight, then reduced. As torch: mse_loss and l1_loss need a weight of the input's shape
  and take the weighted mean (divided by the weights' sum); huber_loss broadcasts it and divides by the element count."""
  if reduction not in ("none", "mean", "sum"): raise ValueError(f"{name}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
  if weight is None: return loss if reduction == "none" else loss.mean() if reduction == "mean" else loss.sum()
  if weighted_mean and weight.shape != loss.shape:
    raise ValueError(f"{name}: weight must have the input's shape {loss.shape}, got {weight.shape}")
  loss = loss * weight
  if reduction == "none": return loss
  if reduction == "sum": return loss.sum()
  return loss.sum() / weight.sum() if weighted_mean else loss.mean()

def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: bool | None = None, ignore_index: int = -100,
                  reduce: bool | None = None, reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
  """torch.nn.functional.cross_entropy of logits input (N, C, ...) against class indices (or class probabilities)."""
  return input.cross_entropy(target, weight, ignore_index, _reduction(size_average, reduce, reduction), label_smoothing)

def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: bool | None = None, ignore_index: int = -100,
             reduce: bool | None = None, reduction: str = "mean") -> Tensor:
  """torch.nn.functional.nll_loss: minus the log-probabilities input (N, C, ...) at the class indices target."""
  return input.nll_loss(target, weight, ignore_index, _reduction(size_average, reduce, reduction))

def mse_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean",
             weight: Tensor | None = None) -> Tensor:
  """torch.nn.functional.mse_loss: (input - target)^2, reduced; with a weight (the input's shape) the mean is the weighted one."""
  return _weighted(input.mse_loss(target, "none"), weight, _reduction(size_average, reduce, reduction), "mse_loss", True)

def l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean",
            weight: Tensor | None = None) -> Tensor:
  """torch.nn.functional.l1_loss: |input - target|, reduced; with a weight (the input's shape) the mean is the weighted one."""
  return _weighted(input.l1_loss(target, "none"), weight, _reduction(size_average, reduce, reduction), "l1_loss", True)

def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0, weight: Tensor | None = None) -> Tensor:
  """torch.nn.functional.huber_loss: quadratic below delta, linear above, times weight if given, reduced."""
  return _weighted(input.huber_loss(target, "none", delta), weight, reduction, "huber_loss", False)

def smooth_l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
  """torch.nn.functional.smooth_l1_loss: huber loss divided by beta."""
  return input.smooth_l1_loss(target, _reduction(size_average, reduce, reduction), beta)

def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: bool | None = None,
                         reduce: bool | None = None, reduction: str = "mean") -> Tensor:
  """torch.nn.functional.binary_cross_entropy of probabilities input against target."""
  return input.binary_cross_entropy(target, weight, _reduction(size_average, reduce, reduction))

def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: bool | None = None,
                                     reduce: bool | None = None, reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
  """torch.nn.functional.binary_cross_entropy_with_logits: binary cross entropy of sigmoid(input), computed stably."""
  return input.binary_cross_entropy_with_logits(target, weight, _reduction(size_average, reduce, reduction), pos_weight)

def kl_div(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean",
           log_target: bool = False) -> Tensor:
  """torch.nn.functional.kl_div of log-probabilities input against target (probabilities, or log ones with log_target)."""
  return input.kl_div(target, _reduction(size_average, reduce, reduction), log_target)
