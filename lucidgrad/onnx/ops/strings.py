"""ONNX string ops on NumPy object arrays (lucidgrad has no string dtype, so these run on the host): StringConcat,
RegexFullMatch, StringSplit, StringNormalizer."""
from __future__ import annotations
import re
import numpy as np
from lucidgrad import Tensor
from lucidgrad.onnx.ops import onnx_op

def _strings(x, op: str) -> np.ndarray:
  if not isinstance(x, np.ndarray) or x.dtype != object: raise TypeError(f"ONNX {op}: expected a string tensor, got {type(x).__name__}")
  return x

@onnx_op("StringConcat", 20)
def string_concat(ctx, inputs, attrs):
  a, b = (_strings(t, "StringConcat") for t in inputs)
  return [np.asarray(np.frompyfunc(lambda u, v: u + v, 2, 1)(a, b), dtype=object)]

@onnx_op("RegexFullMatch", 20)
def regex_full_match(ctx, inputs, attrs):
  x, pat = _strings(inputs[0], "RegexFullMatch"), re.compile(attrs["pattern"])
  return [Tensor(np.vectorize(lambda s: pat.fullmatch(s) is not None, otypes=[bool])(x).reshape(x.shape), device=ctx.device)]

@onnx_op("StringSplit", 20)
def string_split(ctx, inputs, attrs):
  x = _strings(inputs[0], "StringSplit")
  sep, maxsplit = attrs.get("delimiter") or None, attrs.get("maxsplit", -1)
  parts = [s.split(sep, maxsplit) for s in x.reshape(-1)]
  width = max((len(p) for p in parts), default=0)
  out = np.array([p + [""] * (width - len(p)) for p in parts], dtype=object).reshape(*x.shape, width)
  return [out, Tensor(np.array([len(p) for p in parts], dtype=np.int64).reshape(x.shape), device=ctx.device)]

@onnx_op("StringNormalizer", 10)
def string_normalizer(ctx, inputs, attrs):
  x = _strings(inputs[0], "StringNormalizer")
  if x.ndim not in (1, 2) or x.ndim == 2 and x.shape[0] != 1: raise ValueError(f"ONNX StringNormalizer: input must be (C,) or (1, C), got {x.shape}")
  action, sensitive = attrs.get("case_change_action", "NONE"), attrs.get("is_case_sensitive", 0)
  stops = set(attrs.get("stopwords", []))
  fold = (lambda s: s) if sensitive else str.lower
  stops_f = {fold(w) for w in stops}
  change = {"LOWER": str.lower, "UPPER": str.upper, "NONE": lambda s: s}[action]
  kept = [change(s) for s in x.reshape(-1) if fold(s) not in stops_f]
  kept = [s for s in kept if s] or [""]
  out = np.array(kept, dtype=object)
  return [out.reshape(1, -1) if x.ndim == 2 else out]
