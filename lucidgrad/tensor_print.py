"""How a Tensor prints: PyTorch's layout and number formatting (`tensor([[1., 2.], ...])`, summarised with `...` past a
threshold), and the options that steer it (`set_printoptions`). Works on the values as NumPy arrays; knows nothing of graphs."""
from __future__ import annotations
import contextlib, dataclasses, math
from typing import Any
import numpy as np

@dataclasses.dataclass
class PrintOptions:
  precision: int = 4        # digits after the point
  threshold: float = 1000   # more elements than this are summarised
  edgeitems: int = 3        # items shown at each end of a summarised axis
  linewidth: int = 80       # characters per line before a row wraps
  sci_mode: bool | None = None  # None: scientific notation when the values' range asks for it

_OPTS = PrintOptions()
_PROFILES = {"default": PrintOptions(), "short": PrintOptions(precision=2, edgeitems=2), "full": PrintOptions(threshold=math.inf)}

def set_printoptions(precision: int | None = None, threshold: float | None = None, edgeitems: int | None = None, linewidth: int | None = None,
                     profile: str | None = None, sci_mode: bool | None = None):
  """PyTorch's set_printoptions: `profile` ('default', 'short', 'full') first, then each option given; `sci_mode` is
  always set (None: automatic), as in PyTorch."""
  if profile is not None:
    if profile not in _PROFILES: raise ValueError(f"set_printoptions: profile must be one of {list(_PROFILES)}, got {profile!r}")
    for f in dataclasses.fields(PrintOptions): setattr(_OPTS, f.name, getattr(_PROFILES[profile], f.name))
  for name, v in (("precision", precision), ("edgeitems", edgeitems), ("linewidth", linewidth)):
    if v is None: continue
    if not isinstance(v, int) or isinstance(v, bool) or v < 0: raise ValueError(f"set_printoptions: {name} must be an int >= 0, got {v!r}")
    setattr(_OPTS, name, v)
  if threshold is not None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold < 0:
      raise ValueError(f"set_printoptions: threshold must be a number >= 0, got {threshold!r}")
    _OPTS.threshold = threshold
  if sci_mode not in (None, True, False): raise ValueError(f"set_printoptions: sci_mode must be True, False or None, got {sci_mode!r}")
  _OPTS.sci_mode = sci_mode

def get_printoptions() -> dict[str, Any]:
  """The current print options, as a dict of set_printoptions' arguments."""
  return dataclasses.asdict(_OPTS)

@contextlib.contextmanager
def printoptions(**kwargs):
  """`with printoptions(precision=2): print(t)`: set_printoptions for the block, the old options restored after."""
  old = get_printoptions()
  set_printoptions(**kwargs)
  try: yield
  finally: set_printoptions(**old)

class _Formatter:
  """How every element of one tensor is written, decided from all of them (or the summarised ones): a common width, and
  for floats one of three styles -- integers with a trailing point, fixed with `precision` digits, or scientific when
  the nonzero finite magnitudes span more than 1000x, exceed 1e8 or go below 1e-4 (PyTorch's rules)."""
  def __init__(self, values: np.ndarray, is_float: bool):
    self.is_float, self.int_mode, self.sci_mode, self.width = is_float, True, False, 1
    flat = values.reshape(-1)
    if not is_float:
      self.width = max([1] + [len(str(v)) for v in flat.tolist()])
      return
    vals = flat[np.isfinite(flat) & (flat != 0)].astype(np.float64)
    if vals.size == 0: return  # zeros, NaN and inf only: printed as integers, even with sci_mode=True
    lo, hi, p = np.abs(vals).min(), np.abs(vals).max(), _OPTS.precision
    self.int_mode = bool(np.all(vals == np.ceil(vals)))
    self.sci_mode = bool(hi / lo > 1000.0 or hi > 1.0e8 or lo < 1.0e-4) if _OPTS.sci_mode is None else _OPTS.sci_mode
    if self.sci_mode: texts, extra = [f"{v:.{p}e}" for v in vals.tolist()], 0
    elif self.int_mode: texts, extra = [f"{v:.0f}" for v in vals.tolist()], 1  # and the trailing point
    else: texts, extra = [f"{v:.{p}f}" for v in vals.tolist()], 0
    self.width = max(len(t) for t in texts) + extra

  def format(self, v) -> str:
    if not self.is_float: s = str(v)
    elif self.sci_mode: s = f"{v:{self.width}.{_OPTS.precision}e}"
    elif self.int_mode: s = f"{v:.0f}" + ("" if math.isinf(v) or math.isnan(v) else ".")
    else: s = f"{v:.{_OPTS.precision}f}"
    return s.rjust(self.width)

def _summarised(a: np.ndarray) -> np.ndarray:
  """The elements a summarised print shows: `edgeitems` at each end of every long axis."""
  e = _OPTS.edgeitems
  if a.ndim == 0: return a
  if a.ndim > 1 and e == 0: return a[(slice(0, 0),) * a.ndim]
  return a[np.ix_(*[np.r_[0:e, n - e:n] if n > 2 * e else np.arange(n) for n in a.shape])]

def _vector(a: np.ndarray, fmt: _Formatter, indent: int, summarise: bool) -> str:
  e = _OPTS.edgeitems
  per_line = max(1, (_OPTS.linewidth - indent) // (fmt.width + 2))
  if summarise and e == 0: items = ["..."]
  elif summarise and a.shape[0] > 2 * e: items = [fmt.format(v) for v in a[:e].tolist()] + [" ..."] + [fmt.format(v) for v in a[-e:].tolist()]
  else: items = [fmt.format(v) for v in a.tolist()]
  lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
  return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"

def _nested(a: np.ndarray, fmt: _Formatter, indent: int, summarise: bool) -> str:
  if a.ndim == 0: return fmt.format(a.item())
  if a.ndim == 1: return _vector(a, fmt, indent, summarise)
  e, n = _OPTS.edgeitems, a.shape[0]
  if summarise and n > 2 * e:
    rows = [_nested(a[i], fmt, indent + 1, summarise) for i in range(e)] + ["..."] + [_nested(a[i], fmt, indent + 1, summarise) for i in range(n - e, n)]
  else: rows = [_nested(a[i], fmt, indent + 1, summarise) for i in range(n)]
  return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(rows) + "]"

def values_str(a: np.ndarray, is_float: bool, indent: int) -> str:
  """The bracketed values of `a` as PyTorch prints them, lines after the first indented by `indent` + 1."""
  if a.size == 0: return "[]"
  if is_float: a = a.astype(np.float32) if a.dtype.itemsize < 4 else a  # half floats print as floats, as PyTorch's do
  summarise = a.size > _OPTS.threshold
  return _nested(a, _Formatter(_summarised(a) if summarise else a, is_float), indent, summarise)

def tensor_str(values: np.ndarray, is_float: bool, dtype: str | None, device: str | None, grad: str | None) -> str:
  """`tensor(<values>, <suffixes>)`: the device (if given), the size when the values cannot show it (empty, or no
  edge items), the dtype (if given: the caller decides when it is not the default), the grad suffix (if given); a
  suffix that would pass the line width starts a line of its own."""
  prefix, shape = "tensor(", values.shape
  suffixes = [] if device is None else [f"device='{device}'"]
  if values.size == 0 and len(shape) != 1 or values.size and _OPTS.edgeitems == 0: suffixes.append(f"size={tuple(shape)}")
  if dtype is not None: suffixes.append(f"dtype={dtype}")
  if grad is not None: suffixes.append(grad)
  out = prefix + values_str(values, is_float, len(prefix))
  last = len(out) - out.rfind("\n") + 1  # PyTorch's count: the last line's length + 2
  for s in suffixes:
    if last + len(s) + 2 > _OPTS.linewidth: out, last = out + ",\n" + " " * len(prefix) + s, len(prefix) + len(s)
    else: out, last = out + ", " + s, last + len(s) + 2
  return out + ")"
