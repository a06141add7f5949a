"""ONNX string ops on NumPy object arrays (lucidgrad has no string dtype, so these run on the host): StringConcat,
RegexFullMatch, StringSplit, StringNormalizer."""
from __future__ import annotations
import re
import numpy as np
from lucidgrad import Tensor, dtypes
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

@onnx_op("TfIdfVectorizer", 9)
def tfidf_vectorizer(ctx, inputs, attrs):
  x = inputs[0]
  lo, hi, skips = attrs["min_gram_length"], attrs["max_gram_length"], attrs["max_skip_count"]
  counts_at, out_idx = list(attrs["ngram_counts"]), list(attrs["ngram_indexes"])
  size = max(out_idx) + 1 if out_idx else 0
  if "pool_strings" in attrs:  # strings become pool ids on the host (-1 for a word outside the pool); ints stay on the device
    pool_words = list(attrs["pool_strings"])
    ids = {w: i for i, w in enumerate(dict.fromkeys(pool_words))}
    x = Tensor(np.vectorize(lambda s: ids.get(s, -1), otypes=[np.int64])(_strings(x, "TfIdfVectorizer")), device=ctx.device)
    pool = np.array([ids[w] for w in pool_words], np.int64)
  else: pool = np.asarray(attrs["pool_int64s"], np.int64)
  one_d = x.ndim <= 1
  x = x.reshape(1, -1) if one_d else x
  x = x.cast(dtypes.int64)
  B, L = x.shape
  total = Tensor.zeros(B, size, dtype=dtypes.float32, device=x.device)
  bounds = counts_at + [len(pool)]
  for n in range(lo, hi + 1):
    if n > len(counts_at): break
    grams = pool[bounds[n - 1]:bounds[n]].reshape(-1, n)
    if grams.size == 0: continue
    cols = np.zeros((len(grams), size), np.float32)
    cols[np.arange(len(grams)), out_idx[_gram_offset(counts_at, n):][:len(grams)]] = 1
    g = Tensor(grams, device=x.device).reshape(1, 1, len(grams), n)
    for d in (range(1, skips + 2) if n > 1 else [1]):   # a unigram has no gaps: counted once
      P = L - (n - 1) * d
      if P <= 0: continue
      win = Tensor.stack(*[x[:, k * d:k * d + P] for k in range(n)], dim=-1)      # (B, P, n)
      hits = (win.unsqueeze(2) == g).all(-1).cast(dtypes.float32).sum(1)          # (B, grams)
      total = total + hits @ Tensor(cols, device=x.device)
  mode, w = attrs.get("mode", "TF"), attrs.get("weights")
  if mode == "IDF": total = (total > 0).cast(dtypes.float32) * (Tensor(np.asarray(w, np.float32), device=x.device) if w else 1)
  elif mode == "TFIDF": total = total * (Tensor(np.asarray(w, np.float32), device=x.device) if w else 1)
  elif mode != "TF": raise ValueError(f"ONNX TfIdfVectorizer: unknown mode {mode!r}")
  return [total.reshape(size) if one_d else total]

def _gram_offset(counts_at: list[int], n: int) -> int:
  """Index into ngram_indexes of the first n-gram: the number of shorter grams in the pool."""
  return sum((counts_at[k + 1] - counts_at[k]) // (k + 1) for k in range(n - 1))
