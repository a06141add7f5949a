"""A few ops of the ai.onnx.ml domain that are one line of Tensor ops or a table lookup: Binarizer,
ArrayFeatureExtractor, LabelEncoder (string keys or values are mapped on the host; numbers stay on the device)."""
from __future__ import annotations
import numpy as np
from lucidgrad import Tensor, dtypes
from lucidgrad.onnx.ops import onnx_op

_ML = "ai.onnx.ml"

@onnx_op("Binarizer", 1, _ML)
def binarizer(ctx, inputs, attrs):
  x = inputs[0]
  return [(x > attrs.get("threshold", 0.0)).cast(x.dtype)]

@onnx_op("ArrayFeatureExtractor", 1, _ML)
def array_feature_extractor(ctx, inputs, attrs):
  x, idx = inputs
  if isinstance(x, np.ndarray): return [np.take(x, np.asarray(ctx.const(idx)).reshape(-1), axis=-1)]
  return [x.index_select(x.ndim - 1, idx.reshape(-1).cast(dtypes.int64))]

def _text(a) -> list:
  return [v.decode() if isinstance(v, bytes) else v for v in np.asarray(a, dtype=object).reshape(-1)]

def _table(attrs, side: str) -> list | None:
  for kind in ("strings", "int64s", "floats"):
    if f"{side}_{kind}" in attrs: return list(attrs[f"{side}_{kind}"])
  return _text(attrs[f"{side}_tensor"]) if f"{side}_tensor" in attrs else None

@onnx_op("LabelEncoder", 1, _ML)
def label_encoder(ctx, inputs, attrs):
  x = inputs[0]
  keys, values = _table(attrs, "keys"), _table(attrs, "values")
  if keys is None or values is None or len(keys) != len(values): raise ValueError("ONNX LabelEncoder: keys and values must be given, of one length")
  if "default_tensor" in attrs: dflt_arr = np.asarray(attrs["default_tensor"]).reshape(-1)
  else: dflt_arr = np.asarray([attrs.get("default_string", "_Unused") if isinstance(values[0], str) else
                               attrs.get("default_int64", -1) if isinstance(values[0], int) else attrs.get("default_float", -0.0)])
  dflt = _text(dflt_arr)[0] if dflt_arr.dtype == object else dflt_arr[0]
  out_np = np.dtype(np.asarray(attrs["values_tensor"]).dtype if "values_tensor" in attrs else
                    object if isinstance(values[0], str) else np.int64 if isinstance(values[0], int) else np.float32)
  text_out = out_np.kind == "O"
  if isinstance(x, np.ndarray) or text_out:  # strings in or out: a dictionary on the host
    table = dict(zip(keys, values))
    src = _text(x) if isinstance(x, np.ndarray) else np.asarray(ctx.const(x)).reshape(-1).tolist()
    out = np.array([table.get(v, dflt) for v in src], dtype=out_np).reshape(np.shape(x) if isinstance(x, np.ndarray) else x.shape)
    return [out if text_out else Tensor(out, device=ctx.device)]
  out = Tensor.full(x.shape, dflt, dtype=dtypes.from_np(out_np), device=x.device)
  for k, v in zip(keys, values): out = (x == k).where(Tensor(np.asarray(v, out_np), device=x.device), out)
  return [out]

_TREE_CMP = {0: lambda v, s: v <= s, 1: lambda v, s: v < s, 2: lambda v, s: v >= s, 3: lambda v, s: v > s, 4: lambda v, s: v == s,
             5: lambda v, s: v != s}

@onnx_op("TreeEnsemble", 5, _ML)
def tree_ensemble(ctx, inputs, attrs):
  # the trees are attributes, so each leaf's path is known here: a leaf's weight counts where all the comparisons on
  # its path hold, every comparison a Tensor op over the batch
  x = inputs[0]
  if attrs.get("post_transform", 0) != 0: raise NotImplementedError("ONNX TreeEnsemble: post_transform other than NONE")
  agg = attrs.get("aggregate_function", 1)
  if agg not in (0, 1, 2, 3): raise ValueError(f"ONNX TreeEnsemble: unknown aggregate_function {agg}")
  arr = lambda k: np.asarray(attrs[k]).reshape(-1)
  splits, feats, modes = arr("nodes_splits"), [int(v) for v in attrs["nodes_featureids"]], arr("nodes_modes").astype(int)
  tnode, fnode, tleaf, fleaf = attrs["nodes_truenodeids"], attrs["nodes_falsenodeids"], attrs["nodes_trueleafs"], attrs["nodes_falseleafs"]
  missing = list(attrs.get("nodes_missing_value_tracks_true", [0] * len(feats)))
  members = iter(arr("membership_values").tolist()) if "membership_values" in attrs else None
  weights, targets, n_targets = arr("leaf_weights"), [int(t) for t in attrs["leaf_targetids"]], attrs["n_targets"]
  conds: dict[int, Tensor] = {}
  for n, mode in enumerate(modes):   # the membership sets come in node order, each ended by a NaN
    col = x[:, feats[n]]
    if mode == 6:
      vals = []
      while (v := next(members)) == v: vals.append(v)
      c = (col.unsqueeze(-1) == Tensor(np.asarray(vals, x.dtype.np), device=x.device)).any(-1) if vals else col != col
    else: c = _TREE_CMP[int(mode)](col, float(splits[n]))
    conds[n] = (c | col.isnan()) if missing[n] else c
  leaves: list[list[tuple[int, Tensor | None]]] = []   # per tree: (leaf index, the condition of reaching it)
  def walk(n: int, is_leaf: bool, path, out):
    if is_leaf: out.append((n, path)); return
    walk(tnode[n], bool(tleaf[n]), conds[n] if path is None else path & conds[n], out)
    walk(fnode[n], bool(fleaf[n]), ~conds[n] if path is None else path & ~conds[n], out)
  for root in attrs["tree_roots"]:
    out: list = []
    if tleaf[root] and fleaf[root] and tnode[root] == fnode[root]: out.append((tnode[root], None))   # a tree that is one leaf
    else: walk(root, False, None, out)
    leaves.append(out)
  B = x.shape[0]
  if agg in (0, 1): res = Tensor.zeros(B, n_targets, dtype=x.dtype, device=x.device)
  else: res = Tensor.full((B, n_targets), float(np.finfo(x.dtype.np).max if agg == 2 else np.finfo(x.dtype.np).min), dtype=x.dtype, device=x.device)
  onehot = lambda t: Tensor(np.eye(n_targets, dtype=bool)[t], device=x.device)
  for tree in leaves:
    for leaf, path in tree:
      hit = (path if path is not None else Tensor.ones(B, dtype=dtypes.bool, device=x.device)).unsqueeze(-1) & onehot(targets[leaf])
      w = float(weights[leaf]) / (len(leaves) if agg == 0 else 1)
      if agg in (0, 1): res = res + hit.cast(x.dtype) * w
      else: res = hit.where(res.minimum(w) if agg == 2 else res.maximum(w), res)
  return [res]
