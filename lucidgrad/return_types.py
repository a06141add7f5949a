"""Named tuples returned by the ops that give several tensors, as torch.return_types: `x.max(1).values`,
`x.sort().indices`, `x.aminmax().min`; they unpack like plain tuples (`v, i = x.max(1)`)."""
from __future__ import annotations
from collections import namedtuple

def _result(op: str, fields: str):
  base = namedtuple(op, fields)  # type: ignore[misc]
  # the repr names the module, as torch's does: lucidgrad.return_types.max(values=..., indices=...)
  return type(op, (base,), {"__slots__": (), "__module__": __name__, "__qualname__": op,
                            "__repr__": lambda self: f"{__name__}.{base.__repr__(self)}"})

# torch's names, shadowing the builtins max and min inside this module only
max = _result("max", "values indices")
min = _result("min", "values indices")
sort = _result("sort", "values indices")
topk = _result("topk", "values indices")
median = _result("median", "values indices")
mode = _result("mode", "values indices")
kthvalue = _result("kthvalue", "values indices")
cummax = _result("cummax", "values indices")
cummin = _result("cummin", "values indices")
aminmax = _result("aminmax", "min max")

__all__ = ["max", "min", "sort", "topk", "median", "mode", "kthvalue", "cummax", "cummin", "aminmax"]
