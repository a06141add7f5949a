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
