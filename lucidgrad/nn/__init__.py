"""Layers: PyTorch's torch.nn classes -- the same names, arguments, defaults, initial distributions and reprs -- as
nn.Modules (lucidgrad/nn/module.py) whose parameters and buffers are registered under torch's names (`weight`,
`running_mean`, `out_proj.weight`, ...), so a torch state dict loads into them 1:1. A layer is called like a function,
`Linear(3, 4)(x)`; a model is a Module subclass with a forward(), or any Python object holding layers (the helpers of
nn.state walk both). Activation, pooling, padding, dropout and loss layers are in nn/layers.py, the functional forms
in nn.functional, the initialisers in nn.init. Built on the public Tensor API only.

Parameters are realized tensors with requires_grad=True, drawn from the global generator (seed it with
Tensor.manual_seed); buffers (running statistics) are realized tensors without gradients.

Train and eval mode, as torch: a layer starts in training mode; `model.train()` / `model.eval()` set every submodule's
`training` flag, which BatchNorm, InstanceNorm (with tracked statistics), Dropout and MultiheadAttention's dropout read
when called (so a jitted function keeps the mode it was captured in). `with train(mode):` overrides every module's flag
inside the block, for any model (plain objects holding layers too):
  model.eval()                        # running statistics, no dropout, from now on
  with train(): loss = model(x)       # ... or a block in training mode; `with train(False):` for a block of evaluation

Running statistics are written with `assign` (in place for a realized tensor) and are lazy: they take their new values
when next realized. Realize them in the same `realize` as the step's output, before anything overwrites the weights
they were computed from (an optimiser step), e.g. `Tensor.realize(loss, bn.running_mean, bn.running_var,
bn.num_batches_tracked)` or with every buffer of the model; inside a jitted step that is the only way they get updated
on replay."""
from __future__ import annotations
import math
import numpy as np
from lucidgrad import Tensor, dtypes
from lucidgrad.nn import functional, init, layers
from lucidgrad.nn.module import (Module, Parameter, Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict, train,
                                 IncompatibleKeys)
from lucidgrad.nn.layers import *  # noqa: F403  (activations, dropout, pooling, padding, losses)

F = functional
Layer = Module  # the name layers had before Module: code subclassing Layer keeps working

__all__ = ["Module", "Layer", "Parameter", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict", "train",
           "IncompatibleKeys", "Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
           "BatchNorm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
           "InstanceNorm3d", "RMSNorm", "Embedding", "RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell", "MultiheadAttention", "NonDynamicallyQuantizableLinear", "functional",
           "init", *layers.__all__]

def _init(layer: Module, params=(), buffers=()) -> None:
  """Register the named attributes of `layer` (plain attributes until now) as its parameters and then its buffers, in
  the given order (torch's), each in a buffer of its own (so `assign` writes it in place), realized in one schedule;
  a None attribute is registered as None, as torch does for an absent bias."""
  made = {n: None if (t := layer.__dict__.pop(n)) is None else t.contiguous() for n in (*params, *buffers)}
  if live := [t for t in made.values() if t is not None]: Tensor.realize(*live)
  for n in params: layer.register_parameter(n, None if (t := made[n]) is None else t.requires_grad_(True))
  for n in buffers: layer.register_buffer(n, made[n])

def _full(shape, value, dtype, device) -> Tensor:
  """A constant tensor in a buffer of its own. Not Tensor.full(...).contiguous(): two equal constants realized together
  would share one buffer, and an in-place assign to one would change the other."""
  dt = dtype if dtype is not None else dtypes.default_float
  return Tensor(np.full(shape, value, dtype=np.float64 if dt.is_float() else np.int64), dtype=dt, device=device)

def _ntuple(v, n: int, name: str, layer: str) -> tuple:
  t = tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
  if len(t) != n: raise ValueError(f"{layer}: {name} must be an int or {n} ints, got {v!r}")
  return t

def _uniform(shape, bound: float, dtype, device) -> Tensor: return Tensor.uniform(*shape, low=-bound, high=bound, dtype=dtype, device=device)

# ---------------------------------------------------------------- linear

class Linear(Module):
  """y = x W^T + b on the last axis; W (out_features, in_features) and b uniform in +-1/sqrt(in_features), as torch."""
  def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
    super().__init__()
    self.in_features, self.out_features = in_features, out_features
    self.weight = Tensor.kaiming_uniform((out_features, in_features), a=math.sqrt(5), dtype=dtype, device=device)
    self.bias = _uniform((out_features,), 1 / math.sqrt(in_features) if in_features > 0 else 0, dtype, device) if bias else None
    _init(self, ("weight", "bias"))
  def forward(self, x: Tensor) -> Tensor:
    """x of shape (..., in_features) to (..., out_features)."""
    if x.ndim < 1 or x.shape[-1] != self.in_features:
      raise ValueError(f"Linear(in_features={self.in_features}, out_features={self.out_features}): the input's last dimension must be "
                       f"{self.in_features}, got input shape {x.shape}")
    out = x @ self.weight.T
    return out if self.bias is None else out + self.bias
  def extra_repr(self) -> str: return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

class NonDynamicallyQuantizableLinear(Linear):
  """A Linear under the name torch gives MultiheadAttention's out_proj (so the reprs match)."""

# ---------------------------------------------------------------- convolutions

_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}

class _ConvNd(Module):
  _n: int = 0
  _transposed: bool = False
  def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, padding, dilation, groups: int, bias: bool,
               padding_mode: str, output_padding, device, dtype):
    super().__init__()
    name, n = type(self).__name__, self._n
    if not isinstance(groups, int) or groups < 1: raise ValueError(f"{name}: groups must be a positive integer, got {groups!r}")
    if in_channels % groups: raise ValueError(f"{name}: in_channels ({in_channels}) must be divisible by groups ({groups})")
    if out_channels % groups: raise ValueError(f"{name}: out_channels ({out_channels}) must be divisible by groups ({groups})")
    if padding_mode not in _PAD_MODES: raise ValueError(f"{name}: padding_mode must be one of {list(_PAD_MODES)}, got {padding_mode!r}")
    if self._transposed and padding_mode != "zeros": raise ValueError(f"{name}: only 'zeros' padding_mode is supported, got {padding_mode!r}")
    if isinstance(padding, str):
      if self._transposed or padding not in ("same", "valid"):
        allowed = "an int" if self._transposed else "'same', 'valid', an int"
        raise ValueError(f"{name}: padding must be {allowed} or {n} ints, got {padding!r}")
      if padding == "same" and any(s != 1 for s in _ntuple(stride, n, "stride", name)):
        raise ValueError(f"{name}: padding='same' needs stride 1, got stride {stride!r}")
    self.in_channels, self.out_channels, self.groups, self.padding_mode = in_channels, out_channels, groups, padding_mode
    self.kernel_size, self.stride = _ntuple(kernel_size, n, "kernel_size", name), _ntuple(stride, n, "stride", name)
    self.padding = padding if isinstance(padding, str) else _ntuple(padding, n, "padding", name)
    self.dilation, self.output_padding = _ntuple(dilation, n, "dilation", name), _ntuple(output_padding, n, "output_padding", name)
    self.transposed = self._transposed
    # torch's layout: (out, in/groups, *k) for a convolution, (in, out/groups, *k) transposed; fan_in = shape[1] * prod(k)
    shape = (in_channels, out_channels // groups, *self.kernel_size) if self._transposed else (out_channels, in_channels // groups, *self.kernel_size)
    self.weight = Tensor.kaiming_uniform(shape, a=math.sqrt(5), dtype=dtype, device=device)
    fan_in = shape[1] * math.prod(self.kernel_size)
    self.bias = _uniform((out_channels,), 1 / math.sqrt(fan_in) if fan_in > 0 else 0, dtype, device) if bias else None
    _init(self, ("weight", "bias"))
  def extra_repr(self) -> str:
    n, s = self._n, f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
    if self.padding != (0,) * n: s += f", padding={self.padding}"
    if self.dilation != (1,) * n: s += f", dilation={self.dilation}"
    if self.output_padding != (0,) * n: s += f", output_padding={self.output_padding}"
    if self.groups != 1: s += f", groups={self.groups}"
    if self.bias is None: s += ", bias=False"
    return s + (f", padding_mode={self.padding_mode}" if self.padding_mode != "zeros" else "")

class _Conv(_ConvNd):
  def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1, groups: int = 1, bias: bool = True,
               padding_mode: str = "zeros", device=None, dtype=None):
    super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, 0, device, dtype)
  def forward(self, x: Tensor) -> Tensor:
    """The convolution of x (N, C_in, *spatial) or unbatched (C_in, *spatial); padding_mode other than 'zeros' pads x
    first (for padding='same' the odd element goes on the right, as torch)."""
    padding = self.padding
    if self.padding_mode != "zeros" and padding != "valid":
      if padding == "same": pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(self.kernel_size, self.dilation)]
      else: pads = [(p, p) for p in padding]
      x, padding = x.pad(((0, 0),) * (x.ndim - self._n) + tuple(pads), mode=_PAD_MODES[self.padding_mode]), 0
    return getattr(x, f"conv{self._n}d")(self.weight, self.bias, self.stride, padding, self.dilation, self.groups)

class Conv1d(_Conv):
  """torch.nn.Conv1d: weight (out_channels, in_channels/groups, k), kaiming-uniform (a=sqrt(5)); bias +-1/sqrt(fan_in)."""
  _n = 1
class Conv2d(_Conv):
  """torch.nn.Conv2d: weight (out_channels, in_channels/groups, kh, kw), kaiming-uniform (a=sqrt(5)); bias +-1/sqrt(fan_in)."""
  _n = 2
class Conv3d(_Conv):
  """torch.nn.Conv3d: weight (out_channels, in_channels/groups, kd, kh, kw), kaiming-uniform (a=sqrt(5)); bias +-1/sqrt(fan_in)."""
  _n = 3

class _ConvTranspose(_ConvNd):
  _transposed = True
  def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0, groups: int = 1, bias: bool = True,
               dilation=1, padding_mode: str = "zeros", device=None, dtype=None):
    super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, output_padding, device, dtype)
  def forward(self, x: Tensor, output_size=None) -> Tensor:
    """The transposed convolution of x (N, C_in, *spatial) or unbatched; output_size (the spatial sizes, optionally with
    the leading axes) picks the output_padding that gives it, as torch does."""
    op = self.output_padding
    if output_size is not None:
      n, name = self._n, type(self).__name__
      size = tuple(output_size)[-n:] if len(output_size) in (n, n + 1, n + 2) else None
      if size is None: raise ValueError(f"{name}: output_size must have {n}, {n + 1} or {n + 2} entries, got {output_size!r}")
      base = [(l - 1) * s - 2 * p + d * (k - 1) + 1
              for l, s, p, d, k in zip(x.shape[-n:], self.stride, self.padding, self.dilation, self.kernel_size)]
      op = tuple(o - b for o, b in zip(size, base))
      if any(o < 0 or o >= max(s, d) for o, s, d in zip(op, self.stride, self.dilation)):
        raise ValueError(f"{name}: output_size {tuple(size)} cannot be reached from input {x.shape}: the sizes reachable are "
                         f"{tuple(b for b in base)} to {tuple(b + max(s, d) - 1 for b, s, d in zip(base, self.stride, self.dilation))}")
    return getattr(x, f"conv_transpose{self._n}d")(self.weight, self.bias, self.stride, self.padding, op, self.groups, self.dilation)

class ConvTranspose1d(_ConvTranspose):
  """torch.nn.ConvTranspose1d: weight (in_channels, out_channels/groups, k), kaiming-uniform (a=sqrt(5)) on that shape."""
  _n = 1
class ConvTranspose2d(_ConvTranspose):
  """torch.nn.ConvTranspose2d: weight (in_channels, out_channels/groups, kh, kw), kaiming-uniform (a=sqrt(5)) on that shape."""
  _n = 2
class ConvTranspose3d(_ConvTranspose):
  """torch.nn.ConvTranspose3d: weight (in_channels, out_channels/groups, kd, kh, kw), kaiming-uniform (a=sqrt(5)) on that shape."""
  _n = 3

# ---------------------------------------------------------------- normalisation

class _NormBase(Module):
  """weight/bias (ones/zeros) if affine, running_mean/running_var/num_batches_tracked (zeros/ones/0) if tracked."""
  def __init__(self, num_features: int, eps: float, momentum: float | None, affine: bool, track_running_stats: bool, device, dtype, bias: bool):
    super().__init__()
    self.num_features, self.eps, self.momentum, self.affine, self.track_running_stats = num_features, eps, momentum, affine, track_running_stats
    self.weight = _full(num_features, 1, dtype, device) if affine else None
    self.bias = _full(num_features, 0, dtype, device) if affine and bias else None
    self.running_mean = _full(num_features, 0, dtype, device) if track_running_stats else None
    self.running_var = _full(num_features, 1, dtype, device) if track_running_stats else None
    self.num_batches_tracked = _full((), 0, dtypes.int64, device) if track_running_stats else None
    _init(self, ("weight", "bias"), ("running_mean", "running_var", "num_batches_tracked"))
  def extra_repr(self) -> str:
    return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}")

  def _update_stats(self, mean: Tensor, var: Tensor, n: int, f: float | Tensor) -> None:
    """running = (1 - f) running + f batch, written in place (lazily); the variance made unbiased over n values."""
    rm, rv = self.running_mean, self.running_var
    assert rm is not None and rv is not None
    rm.assign((rm * (1 - f) + mean.detach().cast(rm.dtype) * f).cast(rm.dtype))
    rv.assign((rv * (1 - f) + var.detach().cast(rv.dtype) * (f * (n / (n - 1)))).cast(rv.dtype))

class _BatchNormBase(_NormBase):
  _dims: tuple[int, ...] = ()
  _dims_text = "at least 2D input (N, C, ...)"
  def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
               device=None, dtype=None, *, bias: bool = True):
    super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias)
  def forward(self, x: Tensor) -> Tensor:
    """x normalised per channel (axis 1): by the batch's mean and variance when training (or with no running stats),
    else by the running stats. Training updates the running stats lazily (see the module's docstring)."""
    name = type(self).__name__
    if (self._dims and x.ndim not in self._dims) or x.ndim < 2: raise ValueError(f"{name}: expected {self._dims_text}, got input shape {x.shape}")
    if x.shape[1] != self.num_features:
      raise ValueError(f"{name}({self.num_features}): the input has {x.shape[1]} channels (axis 1 of shape {x.shape})")
    if not self.training and self.running_mean is not None and self.running_var is not None:
      return x.batch_norm(self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps)
    C, n = x.shape[1], x.numel() // max(x.shape[1], 1)
    if n <= 1: raise ValueError(f"{name}: training needs more than one value per channel, got input shape {x.shape}")
    axes, shape = (0, *range(2, x.ndim)), (1, C) + (1,) * (x.ndim - 2)
    mean = x.mean(axes)
    var = (x - mean.reshape(shape)).square().mean(axes)
    if self.training and self.track_running_stats and self.running_mean is not None and self.num_batches_tracked is not None:
      nbt = self.num_batches_tracked.assign(self.num_batches_tracked + 1)
      # momentum None: the cumulative average, from the new count (so it is right whichever stat is realized first)
      self._update_stats(mean, var, n, nbt.cast(self.running_mean.dtype).reciprocal() if self.momentum is None else self.momentum)
    # the batch's own statistics, passed where the functional takes running ones: gradients flow through them
    return x.batch_norm(mean, var, self.weight, self.bias, training=False, eps=self.eps)

class BatchNorm(_BatchNormBase):
  """Batch normalisation over axis 1 of an input of any rank >= 2 (torch.nn.BatchNorm1d/2d/3d without the rank check)."""
class BatchNorm1d(_BatchNormBase):
  """torch.nn.BatchNorm1d: input (N, C) or (N, C, L)."""
  _dims, _dims_text = (2, 3), "2D or 3D input (N, C) or (N, C, L)"
class BatchNorm2d(_BatchNormBase):
  """torch.nn.BatchNorm2d: input (N, C, H, W)."""
  _dims, _dims_text = (4,), "4D input (N, C, H, W)"
class BatchNorm3d(_BatchNormBase):
  """torch.nn.BatchNorm3d: input (N, C, D, H, W)."""
  _dims, _dims_text = (5,), "5D input (N, C, D, H, W)"

class _InstanceNorm(_NormBase):
  _n: int = 0
  def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = False, track_running_stats: bool = False,
               device=None, dtype=None, *, bias: bool = True):
    super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias)
  def forward(self, x: Tensor) -> Tensor:
    """Each channel of each sample normalised over its spatial axes; with tracked stats, eval mode uses the running
    stats instead and training updates them with the batch average of the per-sample statistics (num_batches_tracked
    is left alone and momentum=None means no update, as in torch)."""
    name, n = type(self).__name__, self._n
    if x.ndim == n + 1: return self(x.unsqueeze(0)).squeeze(0)
    if x.ndim != n + 2: raise ValueError(f"{name}: expected {n + 1}D (unbatched) or {n + 2}D (batched) input, got input shape {x.shape}")
    if (self.affine or self.track_running_stats) and x.shape[1] != self.num_features:
      raise ValueError(f"{name}({self.num_features}): the input has {x.shape[1]} channels (axis 1 of shape {x.shape})")
    if not self.training and self.track_running_stats and self.running_mean is not None and self.running_var is not None:
      return x.batch_norm(self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps)
    size = math.prod(x.shape[2:])
    if size <= 1: raise ValueError(f"{name}: normalising over the spatial axes needs more than one element, got input shape {x.shape}")
    if self.training and self.track_running_stats and self.running_mean is not None:
      axes = tuple(range(2, x.ndim))
      mean = x.mean(axes)
      var = (x - mean.reshape(*mean.shape, *[1] * n)).square().mean(axes)
      self._update_stats(mean.mean(0), var.mean(0), size, 0.0 if self.momentum is None else self.momentum)
    return x.group_norm(x.shape[1], self.weight, self.bias, eps=self.eps)

class InstanceNorm1d(_InstanceNorm):
  """torch.nn.InstanceNorm1d: input (N, C, L) or (C, L); affine and tracked stats off by default."""
  _n = 1
class InstanceNorm2d(_InstanceNorm):
  """torch.nn.InstanceNorm2d: input (N, C, H, W) or (C, H, W); affine and tracked stats off by default."""
  _n = 2
class InstanceNorm3d(_InstanceNorm):
  """torch.nn.InstanceNorm3d: input (N, C, D, H, W) or (C, D, H, W); affine and tracked stats off by default."""
  _n = 3

def _shape_arg(normalized_shape) -> tuple[int, ...]:
  return (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)

class LayerNorm(Module):
  """torch.nn.LayerNorm over the trailing normalized_shape axes; weight ones, bias zeros."""
  def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True, device=None, dtype=None):
    super().__init__()
    self.normalized_shape, self.eps, self.elementwise_affine = _shape_arg(normalized_shape), eps, elementwise_affine
    self.weight = _full(self.normalized_shape, 1, dtype, device) if elementwise_affine else None
    self.bias = _full(self.normalized_shape, 0, dtype, device) if elementwise_affine and bias else None
    _init(self, ("weight", "bias"))
  def forward(self, x: Tensor) -> Tensor:
    """x normalised over its trailing axes, then scaled and shifted."""
    return x.layer_norm(self.normalized_shape, self.weight, self.bias, self.eps)
  def extra_repr(self) -> str:
    return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}"

class GroupNorm(Module):
  """torch.nn.GroupNorm: channels (axis 1) in num_groups groups, each normalised over its channels and the spatial axes."""
  def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, device=None, dtype=None, *, bias: bool = True):
    super().__init__()
    if num_groups < 1 or num_channels % num_groups:
      raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
    self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
    self.weight = _full(num_channels, 1, dtype, device) if affine else None
    self.bias = _full(num_channels, 0, dtype, device) if affine and bias else None
    _init(self, ("weight", "bias"))
  def forward(self, x: Tensor) -> Tensor:
    """x (N, C, ...) normalised per group of channels."""
    if x.ndim < 2 or x.shape[1] != self.num_channels:
      raise ValueError(f"GroupNorm({self.num_groups}, {self.num_channels}): expected input (N, {self.num_channels}, ...), got shape {x.shape}")
    return x.group_norm(self.num_groups, self.weight, self.bias, self.eps)
  def extra_repr(self) -> str: return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, bias={self.bias is not None}"

class RMSNorm(Module):
  """torch.nn.RMSNorm: x / sqrt(mean(x^2) + eps) over the trailing axes, times weight (ones); eps None is the dtype's machine epsilon."""
  def __init__(self, normalized_shape, eps: float | None = None, elementwise_affine: bool = True, device=None, dtype=None):
    super().__init__()
    self.normalized_shape, self.eps, self.elementwise_affine = _shape_arg(normalized_shape), eps, elementwise_affine
    self.weight = _full(self.normalized_shape, 1, dtype, device) if elementwise_affine else None
    _init(self, ("weight",))
  def forward(self, x: Tensor) -> Tensor:
    """x normalised by its root mean square over the trailing axes."""
    return x.rms_norm(self.normalized_shape, self.weight, self.eps)
  def extra_repr(self) -> str: return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"

# ---------------------------------------------------------------- embedding

class Embedding(Module):
  """torch.nn.Embedding: a (num_embeddings, embedding_dim) table drawn from N(0, 1); the padding_idx row starts at zero
  and never gets a gradient. max_norm renormalises the looked-up rows of `weight` in place, as torch; sparse is
  accepted, but the gradient is always dense."""
  def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, max_norm: float | None = None,
               norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False, _weight: Tensor | None = None,
               _freeze: bool = False, device=None, dtype=None):
    super().__init__()
    if padding_idx is not None:
      if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"Embedding: padding_idx {padding_idx} must be within num_embeddings ({num_embeddings})")
      padding_idx %= num_embeddings
    self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
    self.max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse = max_norm, norm_type, scale_grad_by_freq, sparse
    if _weight is not None:
      if tuple(_weight.shape) != (num_embeddings, embedding_dim):
        raise ValueError(f"Embedding: _weight must have shape ({num_embeddings}, {embedding_dim}), got {tuple(_weight.shape)}")
      w = Tensor(_weight, dtype=dtype, device=device).contiguous()
    else:
      w = Tensor.normal(num_embeddings, embedding_dim, dtype=dtype, device=device)
      if padding_idx is not None:
        keep = Tensor.arange(num_embeddings, device=device).reshape(-1, 1) != padding_idx
        w = keep.where(w, 0)
    self.weight = w
    _init(self, ("weight",))
    if _freeze: self.weight.requires_grad_(False)

  @classmethod
  def from_pretrained(cls, embeddings: Tensor, freeze: bool = True, padding_idx: int | None = None, max_norm: float | None = None,
                      norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Embedding:
    """torch.nn.Embedding.from_pretrained: an Embedding whose weight is a copy of the 2D `embeddings`, frozen (not
    requiring grad) unless freeze=False."""
    if embeddings.ndim != 2: raise ValueError(f"Embedding.from_pretrained: embeddings must be 2D, got shape {embeddings.shape}")
    return cls(*embeddings.shape, padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq,
               sparse=sparse, _weight=embeddings, _freeze=freeze, device=embeddings.device, dtype=embeddings.dtype)

  def extra_repr(self) -> str:
    s = f"{self.num_embeddings}, {self.embedding_dim}"
    if self.padding_idx is not None: s += f", padding_idx={self.padding_idx}"
    if self.max_norm is not None: s += f", max_norm={self.max_norm}"
    if self.norm_type != 2: s += f", norm_type={self.norm_type}"
    if self.scale_grad_by_freq: s += ", scale_grad_by_freq=True"
    return s + (", sparse=True" if self.sparse else "")

  def forward(self, x: Tensor) -> Tensor:
    """The rows of `weight` at the integer indices x, shape (*x.shape, embedding_dim). An index outside
    [0, num_embeddings) raises IndexError at the next host read, as torch raises (the check runs on the device)."""
    if not isinstance(x, Tensor): raise TypeError(f"Embedding: the indices must be an integer Tensor, got {type(x).__name__}")
    if x.dtype.is_float() or x.dtype == dtypes.bool: raise TypeError(f"Embedding: the indices must be integers, got {x.dtype}")
    return F.embedding(x, self.weight, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse)

# ---------------------------------------------------------------- recurrent: nn/rnn.py (imported at the end: it builds on _init)

# ---------------------------------------------------------------- attention

def _additive_mask(m: Tensor, dtype, what: str) -> Tensor:
  """A mask as values added to the scores: a bool mask's True (masked out, torch's MHA convention) becomes -inf."""
  if m.dtype == dtypes.bool: return m.where(-math.inf, 0.0).cast(dtype)
  if not m.dtype.is_float(): raise TypeError(f"MultiheadAttention: {what} must be a bool or float tensor, got {m.dtype}")
  return m.cast(dtype)

class MultiheadAttention(Module):
  """torch.nn.MultiheadAttention. With kdim == vdim == embed_dim the q, k, v projections are one in_proj_weight
  (3E, E), else q_proj_weight/k_proj_weight/v_proj_weight; in_proj_bias (3E) and out_proj's bias start at zero, the
  weights xavier-uniform (out_proj's as a Linear). Masks follow torch's MHA: a bool True masks a position out (the
  opposite of scaled_dot_product_attention), a float mask is added. A query that sees no key gets zero weights and
  output (torch gives NaN there)."""
  def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True, add_bias_kv: bool = False,
               add_zero_attn: bool = False, kdim: int | None = None, vdim: int | None = None, batch_first: bool = False, device=None, dtype=None):
    super().__init__()
    if embed_dim <= 0 or num_heads <= 0:
      raise ValueError(f"MultiheadAttention: embed_dim and num_heads must be positive, got {embed_dim} and {num_heads}")
    if embed_dim % num_heads: raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
    if not 0 <= dropout <= 1: raise ValueError(f"MultiheadAttention: dropout must be between 0 and 1, got {dropout}")
    E = embed_dim
    self.embed_dim, self.kdim, self.vdim = E, kdim if kdim is not None else E, vdim if vdim is not None else E
    self._qkv_same_embed_dim = self.kdim == E and self.vdim == E
    self.num_heads, self.dropout, self.batch_first, self.head_dim = num_heads, dropout, batch_first, E // num_heads
    if self._qkv_same_embed_dim:
      self.in_proj_weight = Tensor.xavier_uniform((3 * E, E), dtype=dtype, device=device)
      self.q_proj_weight = self.k_proj_weight = self.v_proj_weight = None
    else:
      self.in_proj_weight = None
      self.q_proj_weight, self.k_proj_weight, self.v_proj_weight = [Tensor.xavier_uniform((E, d), dtype=dtype, device=device)
                                                                    for d in (E, self.kdim, self.vdim)]
    self.in_proj_bias = _full(3 * E, 0, dtype, device) if bias else None
    self.bias_k, self.bias_v = [Tensor.xavier_normal((1, 1, E), dtype=dtype, device=device) for _ in range(2)] if add_bias_kv else (None, None)
    self.add_zero_attn = add_zero_attn
    # torch's registration order; without add_bias_kv, bias_k and bias_v stay plain None attributes, as in torch
    _init(self, ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias") + (("bias_k", "bias_v") if add_bias_kv else ()))
    self.out_proj = NonDynamicallyQuantizableLinear(E, E, bias=False, device=device, dtype=dtype)  # its bias starts at zero, not random
    if bias: self.out_proj.register_parameter("bias", _full(E, 0, dtype, device).requires_grad_(True))

  def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None, need_weights: bool = True,
               attn_mask: Tensor | None = None, average_attn_weights: bool = True, is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
    """(attn_output, attn_weights): the output in the query's layout ((L, N, E), (N, L, E) with batch_first, or (L, E)
    unbatched), and when need_weights the softmax weights (N, L, S) averaged over heads, or (N, H, L, S); else None.
    attn_mask is (L, S) or (N*H, L, S), key_padding_mask (N, S); is_causal with no attn_mask masks the keys after each
    query (torch needs the mask given)."""
    E, H, D = self.embed_dim, self.num_heads, self.head_dim
    batched = query.ndim == 3
    if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
      raise ValueError(f"MultiheadAttention: query, key and value must all be 3D (batched) or 2D (unbatched), "
                       f"got {query.shape}, {key.shape}, {value.shape}")
    if not batched:
      query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
      if key_padding_mask is not None: key_padding_mask = key_padding_mask.unsqueeze(0)
    elif not self.batch_first: query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    N, L, S = query.shape[0], query.shape[1], key.shape[1]
    if query.shape[2] != E: raise ValueError(f"MultiheadAttention: query must have embed_dim {E} features, got query shape {query.shape}")
    if key.shape[2] != self.kdim or value.shape[2] != self.vdim or key.shape[:2] != (N, S) or value.shape[:2] != (N, S):
      raise ValueError(f"MultiheadAttention: key and value must have the query's batch size {N}, one sequence length, and {self.kdim} "
                       f"and {self.vdim} features; got key {key.shape} and value {value.shape} (batch first)")
    # projections
    if self.in_proj_weight is not None: wq, wk, wv = self.in_proj_weight.chunk(3)
    else: wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
    bq, bk, bv = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
    q, k, v = [x @ w.T if b is None else x @ w.T + b for x, w, b in ((query, wq, bq), (key, wk, bk), (value, wv, bv))]
    # masks: one additive float mask broadcast to (N, H, L, S'), S' counting the extra bias and zero keys
    mask = None
    if attn_mask is not None:
      if attn_mask.shape == (L, S): am = attn_mask.reshape(1, 1, L, S)
      elif attn_mask.shape == (N * H, L, S): am = attn_mask.reshape(N, H, L, S)
      else: raise ValueError(f"MultiheadAttention: attn_mask must have shape {(L, S)} or {(N * H, L, S)}, got {attn_mask.shape}")
      mask = _additive_mask(am, q.dtype, "attn_mask")
    elif is_causal:
      r = Tensor.arange(max(L, S), device=q.device)
      mask = _additive_mask((r[:S].reshape(1, S) > r[:L].reshape(L, 1)).reshape(1, 1, L, S), q.dtype, "attn_mask")
    if key_padding_mask is not None:
      if key_padding_mask.shape != (N, S):
        raise ValueError(f"MultiheadAttention: key_padding_mask must have shape {(N, S)}, got {key_padding_mask.shape}")
      kpm = _additive_mask(key_padding_mask.reshape(N, 1, 1, S), q.dtype, "key_padding_mask")
      mask = kpm if mask is None else mask + kpm
    if self.bias_k is not None and self.bias_v is not None:
      k, v = k.cat(self.bias_k.expand(N, 1, E), dim=1), v.cat(self.bias_v.expand(N, 1, E), dim=1)
    q, k, v = [t.reshape(N, t.shape[1], H, D).transpose(1, 2) for t in (q, k, v)]  # (N, H, len, D)
    if self.add_zero_attn: k, v = [t.cat(Tensor.zeros(N, H, 1, D, dtype=t.dtype, device=t.device), dim=2) for t in (k, v)]
    extra = k.shape[2] - S
    if mask is not None and extra: mask = mask.pad(((0, 0), (0, 0), (0, 0), (0, extra)))
    p = self.dropout if self.training else 0.0
    weights = None
    if need_weights:
      scores = q @ k.transpose(-1, -2) * (1 / math.sqrt(D))
      if mask is not None: scores = scores + mask
      m = scores.max(axis=-1, keepdim=True)
      e = (scores - (m == -math.inf).where(0, m)).exp()  # a row with every key masked: all zeros, not NaN
      s = e.sum(-1, keepdim=True)
      weights = e / (s == 0).where(1, s)
      if p > 0: weights = weights.dropout(p)
      out = weights @ v
    else: out = q.scaled_dot_product_attention(k, v, attn_mask=mask, dropout_p=p)
    out = self.out_proj(out.transpose(1, 2).reshape(N, L, E))
    if not batched: out = out.squeeze(0)
    elif not self.batch_first: out = out.transpose(0, 1)
    if weights is not None:
      if average_attn_weights: weights = weights.mean(1)
      if not batched: weights = weights.squeeze(0)
    return out, weights
from lucidgrad.nn.rnn import RNNBase, RNN, LSTM, GRU, RNNCellBase, RNNCell, LSTMCell, GRUCell  # noqa: E402
from lucidgrad.nn import optim  # noqa: E402,F401  (lucidgrad.nn.optim as an attribute, as torch.optim is)
