"""torch.nn's layers without weights of their own (and PReLU): activations, dropout, reshaping, pooling, padding,
upsampling and losses, each a Module with torch's constructor arguments and repr, its forward one call of
nn.functional. Train/eval mode matters only to the dropouts."""
from __future__ import annotations
from typing import Any
from lucidgrad import Tensor
from lucidgrad.nn import functional as F
from lucidgrad.nn.module import Module, Parameter

__all__ = ["ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Softplus", "Softsign", "Hardtanh", "Hardswish",
           "Hardsigmoid", "Tanh", "Sigmoid", "LogSigmoid", "Softmax", "LogSoftmax", "Softmin", "Softmax2d", "Threshold", "Tanhshrink",
           "Softshrink", "Hardshrink", "GLU", "PReLU", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
           "Flatten", "Unflatten", "Identity", "PixelShuffle", "PixelUnshuffle", "CosineSimilarity", "PairwiseDistance",
           "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
           "AdaptiveAvgPool3d", "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d",
           "ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d",
           "ReplicationPad2d", "ReplicationPad3d", "CircularPad1d", "CircularPad2d", "CircularPad3d", "CrossEntropyLoss", "NLLLoss", "MSELoss",
           "L1Loss", "HuberLoss", "SmoothL1Loss", "BCELoss", "BCEWithLogitsLoss", "KLDivLoss"]

# ---------------------------------------------------------------- activations

class _Inplace(Module):
  """An activation with torch's `inplace` flag (accepted; the result is always a new tensor), shown in the repr when set."""
  def __init__(self, inplace: bool = False):
    super().__init__()
    self.inplace = inplace
  def extra_repr(self) -> str: return "inplace=True" if self.inplace else ""

class ReLU(_Inplace):
  """torch.nn.ReLU: max(x, 0)."""
  def forward(self, x: Tensor) -> Tensor: return F.relu(x)
class ReLU6(_Inplace):
  """torch.nn.ReLU6: min(max(x, 0), 6)."""
  def forward(self, x: Tensor) -> Tensor: return F.relu6(x)
class SELU(_Inplace):
  """torch.nn.SELU: scale * elu(x, alpha) with the self-normalising constants."""
  def forward(self, x: Tensor) -> Tensor: return F.selu(x)
class SiLU(_Inplace):
  """torch.nn.SiLU: x * sigmoid(x)."""
  def forward(self, x: Tensor) -> Tensor: return F.silu(x)
class Mish(_Inplace):
  """torch.nn.Mish: x * tanh(softplus(x))."""
  def forward(self, x: Tensor) -> Tensor: return F.mish(x)
class Hardswish(_Inplace):
  """torch.nn.Hardswish: x * relu6(x + 3) / 6."""
  def forward(self, x: Tensor) -> Tensor: return F.hardswish(x)
class Hardsigmoid(_Inplace):
  """torch.nn.Hardsigmoid: relu6(x + 3) / 6."""
  def forward(self, x: Tensor) -> Tensor: return F.hardsigmoid(x)

class LeakyReLU(Module):
  """torch.nn.LeakyReLU: x for x >= 0, negative_slope * x below."""
  def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
    super().__init__()
    self.negative_slope, self.inplace = negative_slope, inplace
  def forward(self, x: Tensor) -> Tensor: return F.leaky_relu(x, self.negative_slope)
  def extra_repr(self) -> str: return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")

class ELU(Module):
  """torch.nn.ELU: x for x > 0, alpha * (exp(x) - 1) below."""
  def __init__(self, alpha: float = 1.0, inplace: bool = False):
    super().__init__()
    self.alpha, self.inplace = alpha, inplace
  def forward(self, x: Tensor) -> Tensor: return F.elu(x, self.alpha)
  def extra_repr(self) -> str: return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")

class CELU(ELU):
  """torch.nn.CELU: x for x > 0, alpha * (exp(x / alpha) - 1) below."""
  def forward(self, x: Tensor) -> Tensor: return F.celu(x, self.alpha)

class GELU(Module):
  """torch.nn.GELU: x * Phi(x); approximate='tanh' uses the tanh approximation."""
  def __init__(self, approximate: str = "none"):
    super().__init__()
    if approximate not in ("none", "tanh"): raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
    self.approximate = approximate
  def forward(self, x: Tensor) -> Tensor: return F.gelu(x, self.approximate)
  def extra_repr(self) -> str: return f"approximate={self.approximate!r}"

class Softplus(Module):
  """torch.nn.Softplus: log(1 + exp(beta x)) / beta, x itself where beta x > threshold."""
  def __init__(self, beta: float = 1.0, threshold: float = 20.0):
    super().__init__()
    self.beta, self.threshold = beta, threshold
  def forward(self, x: Tensor) -> Tensor: return F.softplus(x, self.beta, self.threshold)
  def extra_repr(self) -> str: return f"beta={self.beta}, threshold={self.threshold}"

class Hardtanh(Module):
  """torch.nn.Hardtanh: x clamped to [min_val, max_val]."""
  def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
    super().__init__()
    if max_val <= min_val: raise ValueError(f"Hardtanh: max_val ({max_val}) must be greater than min_val ({min_val})")
    self.min_val, self.max_val, self.inplace = min_val, max_val, inplace
  def forward(self, x: Tensor) -> Tensor: return F.hardtanh(x, self.min_val, self.max_val)
  def extra_repr(self) -> str: return f"min_val={self.min_val}, max_val={self.max_val}" + (", inplace=True" if self.inplace else "")

class Threshold(Module):
  """torch.nn.Threshold: x where x > threshold, else value."""
  def __init__(self, threshold: float, value: float, inplace: bool = False):
    super().__init__()
    self.threshold, self.value, self.inplace = threshold, value, inplace
  def forward(self, x: Tensor) -> Tensor: return F.threshold(x, self.threshold, self.value)
  def extra_repr(self) -> str: return f"threshold={self.threshold}, value={self.value}" + (", inplace=True" if self.inplace else "")

class _Plain(Module):
  """An activation without arguments."""
  def __init__(self, *args, **kwargs):  # torch's accept and ignore arguments here too
    super().__init__()

class Softsign(_Plain):
  """torch.nn.Softsign: x / (1 + |x|)."""
  def forward(self, x: Tensor) -> Tensor: return F.softsign(x)
class Tanh(_Plain):
  """torch.nn.Tanh."""
  def forward(self, x: Tensor) -> Tensor: return x.tanh()
class Sigmoid(_Plain):
  """torch.nn.Sigmoid: 1 / (1 + exp(-x))."""
  def forward(self, x: Tensor) -> Tensor: return x.sigmoid()
class LogSigmoid(_Plain):
  """torch.nn.LogSigmoid: log(sigmoid(x)), computed stably."""
  def forward(self, x: Tensor) -> Tensor: return F.logsigmoid(x)
class Tanhshrink(_Plain):
  """torch.nn.Tanhshrink: x - tanh(x)."""
  def forward(self, x: Tensor) -> Tensor: return F.tanhshrink(x)
class Identity(_Plain):
  """torch.nn.Identity: its input, unchanged (constructor arguments are accepted and ignored)."""
  def forward(self, x: Any) -> Any: return x
class Softmax2d(_Plain):
  """torch.nn.Softmax2d: softmax over the channels of (N, C, H, W) or (C, H, W)."""
  def forward(self, x: Tensor) -> Tensor:
    if x.ndim not in (3, 4): raise ValueError(f"Softmax2d: expected 3D or 4D input, got input shape {x.shape}")
    return F.softmax(x, -3)

class Softshrink(Module):
  """torch.nn.Softshrink: x - lambd above lambd, x + lambd below -lambd, 0 between."""
  def __init__(self, lambd: float = 0.5):
    super().__init__()
    self.lambd = lambd
  def forward(self, x: Tensor) -> Tensor: return F.softshrink(x, self.lambd)
  def extra_repr(self) -> str: return str(self.lambd)
class Hardshrink(Softshrink):
  """torch.nn.Hardshrink: x where |x| > lambd, else 0."""
  def forward(self, x: Tensor) -> Tensor: return F.hardshrink(x, self.lambd)

class _SoftmaxLike(Module):
  def __init__(self, dim: int | None = None):
    super().__init__()
    self.dim = dim
  def extra_repr(self) -> str: return f"dim={self.dim}"
class Softmax(_SoftmaxLike):
  """torch.nn.Softmax: softmax along dim."""
  def forward(self, x: Tensor) -> Tensor: return F.softmax(x, self.dim)
class LogSoftmax(_SoftmaxLike):
  """torch.nn.LogSoftmax: log_softmax along dim."""
  def forward(self, x: Tensor) -> Tensor: return F.log_softmax(x, self.dim)
class Softmin(_SoftmaxLike):
  """torch.nn.Softmin: softmax(-x) along dim."""
  def forward(self, x: Tensor) -> Tensor: return F.softmin(x, self.dim)

class GLU(Module):
  """torch.nn.GLU: a * sigmoid(b) for the halves a, b of the input along dim."""
  def __init__(self, dim: int = -1):
    super().__init__()
    self.dim = dim
  def forward(self, x: Tensor) -> Tensor: return F.glu(x, self.dim)
  def extra_repr(self) -> str: return f"dim={self.dim}"

class PReLU(Module):
  """torch.nn.PReLU: x for x >= 0, weight * x below, with a learnt weight (num_parameters: 1, or one per channel) that
  starts at `init`."""
  def __init__(self, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None):
    super().__init__()
    self.num_parameters = num_parameters
    self.weight = Parameter(Tensor.full((num_parameters,), init, dtype=dtype, device=device))
  def forward(self, x: Tensor) -> Tensor: return F.prelu(x, self.weight)
  def extra_repr(self) -> str: return f"num_parameters={self.num_parameters}"

# ---------------------------------------------------------------- dropout

class _DropoutBase(Module):
  def __init__(self, p: float = 0.5, inplace: bool = False):
    super().__init__()
    if not 0 <= p <= 1: raise ValueError(f"{type(self).__name__}: p must be between 0 and 1, got {p}")
    self.p, self.inplace = p, inplace
  def extra_repr(self) -> str: return f"p={self.p}, inplace={self.inplace}"

class Dropout(_DropoutBase):
  """torch.nn.Dropout: in training, zero each element with probability p and scale the rest by 1/(1-p); the identity in
  eval mode. `inplace` is accepted (the result is a new tensor)."""
  def forward(self, x: Tensor) -> Tensor: return F.dropout(x, self.p, self.training)
class Dropout1d(_DropoutBase):
  """torch.nn.Dropout1d: in training, zero whole channels of (N, C, L) or (C, L) with probability p, scale the rest by 1/(1-p)."""
  def forward(self, x: Tensor) -> Tensor: return F.dropout1d(x, self.p, self.training)
class Dropout2d(_DropoutBase):
  """torch.nn.Dropout2d: in training, zero whole channels of (N, C, H, W) or (C, H, W) with probability p, scale the rest."""
  def forward(self, x: Tensor) -> Tensor: return F.dropout2d(x, self.p, self.training)
class Dropout3d(_DropoutBase):
  """torch.nn.Dropout3d: in training, zero whole channels of (N, C, D, H, W) or (C, D, H, W) with probability p, scale the rest."""
  def forward(self, x: Tensor) -> Tensor: return F.dropout3d(x, self.p, self.training)
class AlphaDropout(_DropoutBase):
  """torch.nn.AlphaDropout: dropout for SELU networks that keeps a zero mean and unit variance (see F.alpha_dropout)."""
  def forward(self, x: Tensor) -> Tensor: return F.alpha_dropout(x, self.p, self.training)
class FeatureAlphaDropout(_DropoutBase):
  """torch.nn.FeatureAlphaDropout: alpha dropout of whole channels."""
  def forward(self, x: Tensor) -> Tensor: return F.feature_alpha_dropout(x, self.p, self.training)

# ---------------------------------------------------------------- shapes

class Flatten(Module):
  """torch.nn.Flatten: axes start_dim..end_dim merged into one (by default all but the batch axis)."""
  def __init__(self, start_dim: int = 1, end_dim: int = -1):
    super().__init__()
    self.start_dim, self.end_dim = start_dim, end_dim
  def forward(self, x: Tensor) -> Tensor: return x.flatten(self.start_dim, self.end_dim)
  def extra_repr(self) -> str: return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

class Unflatten(Module):
  """torch.nn.Unflatten: axis dim split into unflattened_size."""
  def __init__(self, dim: int, unflattened_size):
    super().__init__()
    self.dim, self.unflattened_size = dim, unflattened_size
  def forward(self, x: Tensor) -> Tensor: return x.unflatten(self.dim, tuple(self.unflattened_size))
  def extra_repr(self) -> str: return f"dim={self.dim}, unflattened_size={self.unflattened_size}"

class PixelShuffle(Module):
  """torch.nn.PixelShuffle: (*, C*r*r, H, W) to (*, C, H*r, W*r)."""
  def __init__(self, upscale_factor: int):
    super().__init__()
    self.upscale_factor = upscale_factor
  def forward(self, x: Tensor) -> Tensor: return F.pixel_shuffle(x, self.upscale_factor)
  def extra_repr(self) -> str: return f"upscale_factor={self.upscale_factor}"

class PixelUnshuffle(Module):
  """torch.nn.PixelUnshuffle: (*, C, H*r, W*r) to (*, C*r*r, H, W)."""
  def __init__(self, downscale_factor: int):
    super().__init__()
    self.downscale_factor = downscale_factor
  def forward(self, x: Tensor) -> Tensor: return F.pixel_unshuffle(x, self.downscale_factor)
  def extra_repr(self) -> str: return f"downscale_factor={self.downscale_factor}"

class CosineSimilarity(Module):
  """torch.nn.CosineSimilarity: the cosine of the angle between x1 and x2 along dim."""
  def __init__(self, dim: int = 1, eps: float = 1e-8):
    super().__init__()
    self.dim, self.eps = dim, eps
  def forward(self, x1: Tensor, x2: Tensor) -> Tensor: return F.cosine_similarity(x1, x2, self.dim, self.eps)

class PairwiseDistance(Module):
  """torch.nn.PairwiseDistance: the p-norm of x1 - x2 + eps along the last axis."""
  def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False):
    super().__init__()
    self.norm, self.eps, self.keepdim = p, eps, keepdim
  def forward(self, x1: Tensor, x2: Tensor) -> Tensor: return F.pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)

# ---------------------------------------------------------------- pooling

class _MaxPool(Module):
  _n = 0
  def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False, ceil_mode: bool = False):
    super().__init__()
    self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
    self.padding, self.dilation, self.return_indices, self.ceil_mode = padding, dilation, return_indices, ceil_mode
  def forward(self, x: Tensor):
    return getattr(x, f"max_pool{self._n}d")(self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, self.return_indices)
  def extra_repr(self) -> str:
    return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, dilation={self.dilation}, ceil_mode={self.ceil_mode}"
class MaxPool1d(_MaxPool):
  """torch.nn.MaxPool1d over (N, C, L) or (C, L); return_indices also gives each maximum's index."""
  _n = 1
class MaxPool2d(_MaxPool):
  """torch.nn.MaxPool2d over (N, C, H, W) or (C, H, W); return_indices also gives each maximum's flat index."""
  _n = 2
class MaxPool3d(_MaxPool):
  """torch.nn.MaxPool3d over (N, C, D, H, W) or (C, D, H, W); return_indices also gives each maximum's flat index."""
  _n = 3

class _AvgPool(Module):
  _n = 0
  def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True, divisor_override=None):
    super().__init__()
    self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
    self.padding, self.ceil_mode, self.count_include_pad, self.divisor_override = padding, ceil_mode, count_include_pad, divisor_override
  def forward(self, x: Tensor) -> Tensor:
    return getattr(x, f"avg_pool{self._n}d")(self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                                             self.divisor_override)
  def extra_repr(self) -> str: return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
class AvgPool1d(_AvgPool):
  """torch.nn.AvgPool1d over (N, C, L) or (C, L) (no divisor_override, as torch's; sizes kept as 1-tuples, as torch shows them)."""
  _n = 1
  def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True):
    one = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,)
    super().__init__(one(kernel_size), one(stride) if stride is not None else None, one(padding), ceil_mode, count_include_pad)
class AvgPool2d(_AvgPool):
  """torch.nn.AvgPool2d over (N, C, H, W) or (C, H, W)."""
  _n = 2
class AvgPool3d(_AvgPool):
  """torch.nn.AvgPool3d over (N, C, D, H, W) or (C, D, H, W)."""
  _n = 3

class _AdaptiveAvgPool(Module):
  _n = 0
  def __init__(self, output_size):
    super().__init__()
    self.output_size = output_size
  def forward(self, x: Tensor) -> Tensor: return getattr(x, f"adaptive_avg_pool{self._n}d")(self.output_size)
  def extra_repr(self) -> str: return f"output_size={self.output_size}"
class AdaptiveAvgPool1d(_AdaptiveAvgPool):
  """torch.nn.AdaptiveAvgPool1d: average pooling to output_size positions."""
  _n = 1
class AdaptiveAvgPool2d(_AdaptiveAvgPool):
  """torch.nn.AdaptiveAvgPool2d: average pooling to an output_size (H, W) (None keeps that axis)."""
  _n = 2
class AdaptiveAvgPool3d(_AdaptiveAvgPool):
  """torch.nn.AdaptiveAvgPool3d: average pooling to an output_size (D, H, W) (None keeps that axis)."""
  _n = 3

# ---------------------------------------------------------------- upsampling, padding

class Upsample(Module):
  """torch.nn.Upsample: F.interpolate with these arguments (scale_factor kept as floats, as torch does)."""
  def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None, recompute_scale_factor: bool | None = None):
    super().__init__()
    self.size, self.mode, self.align_corners, self.recompute_scale_factor = size, mode, align_corners, recompute_scale_factor
    self.scale_factor = (tuple(float(f) for f in scale_factor) if isinstance(scale_factor, (tuple, list)) else
                         float(scale_factor) if scale_factor is not None else None)
  def forward(self, x: Tensor) -> Tensor:
    return F.interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners, self.recompute_scale_factor)
  def extra_repr(self) -> str:
    return (f"scale_factor={self.scale_factor!r}" if self.scale_factor is not None else f"size={self.size!r}") + f", mode={self.mode!r}"

class UpsamplingNearest2d(Upsample):
  """torch.nn.UpsamplingNearest2d: Upsample(mode='nearest')."""
  def __init__(self, size=None, scale_factor=None): super().__init__(size, scale_factor, "nearest")
class UpsamplingBilinear2d(Upsample):
  """torch.nn.UpsamplingBilinear2d: Upsample(mode='bilinear', align_corners=True)."""
  def __init__(self, size=None, scale_factor=None): super().__init__(size, scale_factor, "bilinear", align_corners=True)

class _Pad(Module):
  _n, _mode = 0, "constant"
  def __init__(self, padding):
    super().__init__()
    self.padding = tuple(padding) if isinstance(padding, (tuple, list)) else (padding,) * (2 * self._n)
    if len(self.padding) != 2 * self._n:
      raise ValueError(f"{type(self).__name__}: padding must be an int or {2 * self._n} ints, got {padding!r}")
  def forward(self, x: Tensor) -> Tensor: return F.pad(x, self.padding, self._mode)
  def extra_repr(self) -> str: return f"{self.padding}"

class _ConstantPad(_Pad):
  def __init__(self, padding, value: float):
    super().__init__(padding)
    self.value = value
  def forward(self, x: Tensor) -> Tensor: return F.pad(x, self.padding, "constant", self.value)
  def extra_repr(self) -> str: return f"padding={self.padding}, value={self.value}"

class _ZeroPad(_ConstantPad):
  def __init__(self, padding): super().__init__(padding, 0.0)
  def extra_repr(self) -> str: return f"{self.padding}"

def _pad_class(base: type, mode: str, n: int, what: str) -> type:
  name = f"{what}{n}d"
  doc = f"torch.nn.{name}: pads the last {n} axes ({mode}); padding is an int or torch's flat (left, right, ...) tuple, last axis first."
  return type(name, (base,), {"_n": n, "_mode": mode, "__doc__": doc, "__module__": __name__})

ZeroPad1d, ZeroPad2d, ZeroPad3d = [_pad_class(_ZeroPad, "zeros", n, "ZeroPad") for n in (1, 2, 3)]
ConstantPad1d, ConstantPad2d, ConstantPad3d = [_pad_class(_ConstantPad, "constant value", n, "ConstantPad") for n in (1, 2, 3)]
ReflectionPad1d, ReflectionPad2d, ReflectionPad3d = [_pad_class(_Pad, "reflect", n, "ReflectionPad") for n in (1, 2, 3)]
ReplicationPad1d, ReplicationPad2d, ReplicationPad3d = [_pad_class(_Pad, "replicate", n, "ReplicationPad") for n in (1, 2, 3)]
CircularPad1d, CircularPad2d, CircularPad3d = [_pad_class(_Pad, "circular", n, "CircularPad") for n in (1, 2, 3)]

# ---------------------------------------------------------------- losses

class _Loss(Module):
  def __init__(self, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean"):
    super().__init__()
    self.reduction = F._reduction(size_average, reduce, reduction)

class _WeightedLoss(_Loss):
  """A loss with a per-class `weight`, registered as a buffer as torch does."""
  def __init__(self, weight: Tensor | None = None, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean"):
    super().__init__(size_average, reduce, reduction)
    self.register_buffer("weight", weight)

class CrossEntropyLoss(_WeightedLoss):
  """torch.nn.CrossEntropyLoss: F.cross_entropy(input logits, target) with these options."""
  def __init__(self, weight: Tensor | None = None, size_average=None, ignore_index: int = -100, reduce=None, reduction: str = "mean",
               label_smoothing: float = 0.0):
    super().__init__(weight, size_average, reduce, reduction)
    self.ignore_index, self.label_smoothing = ignore_index, label_smoothing
  def forward(self, input: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction, label_smoothing=self.label_smoothing)

class NLLLoss(_WeightedLoss):
  """torch.nn.NLLLoss: F.nll_loss(input log-probabilities, target) with these options."""
  def __init__(self, weight: Tensor | None = None, size_average=None, ignore_index: int = -100, reduce=None, reduction: str = "mean"):
    super().__init__(weight, size_average, reduce, reduction)
    self.ignore_index = ignore_index
  def forward(self, input: Tensor, target: Tensor) -> Tensor:
    return F.nll_loss(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction)

class BCELoss(_WeightedLoss):
  """torch.nn.BCELoss: F.binary_cross_entropy(input probabilities, target)."""
  def forward(self, input: Tensor, target: Tensor) -> Tensor: return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction)

class BCEWithLogitsLoss(_Loss):
  """torch.nn.BCEWithLogitsLoss: F.binary_cross_entropy_with_logits; weight and pos_weight are buffers, as torch's."""
  def __init__(self, weight: Tensor | None = None, size_average=None, reduce=None, reduction: str = "mean", pos_weight: Tensor | None = None):
    super().__init__(size_average, reduce, reduction)
    self.register_buffer("weight", weight)
    self.register_buffer("pos_weight", pos_weight)
  def forward(self, input: Tensor, target: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction, pos_weight=self.pos_weight)

class MSELoss(_Loss):
  """torch.nn.MSELoss: mean (or sum, or none) of (input - target)^2."""
  def forward(self, input: Tensor, target: Tensor) -> Tensor: return F.mse_loss(input, target, reduction=self.reduction)
class L1Loss(_Loss):
  """torch.nn.L1Loss: mean (or sum, or none) of |input - target|."""
  def forward(self, input: Tensor, target: Tensor) -> Tensor: return F.l1_loss(input, target, reduction=self.reduction)

class HuberLoss(_Loss):
  """torch.nn.HuberLoss: quadratic below delta, linear above."""
  def __init__(self, reduction: str = "mean", delta: float = 1.0):
    super().__init__(reduction=reduction)
    self.delta = delta
  def forward(self, input: Tensor, target: Tensor) -> Tensor: return F.huber_loss(input, target, self.reduction, self.delta)

class SmoothL1Loss(_Loss):
  """torch.nn.SmoothL1Loss: huber loss divided by beta."""
  def __init__(self, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0):
    super().__init__(size_average, reduce, reduction)
    self.beta = beta
  def forward(self, input: Tensor, target: Tensor) -> Tensor: return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)

class KLDivLoss(_Loss):
  """torch.nn.KLDivLoss: F.kl_div(input log-probabilities, target)."""
  def __init__(self, size_average=None, reduce=None, reduction: str = "mean", log_target: bool = False):
    super().__init__(size_average, reduce, reduction)
    self.log_target = log_target
  def forward(self, input: Tensor, target: Tensor) -> Tensor: return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
