"""ONNX attention ops of opset 23 on: Attention (3-D or 4-D inputs, GQA, KV cache, boolean or additive masks, causal
with the cache's offset, sliding windows, softcap, the qk output modes, softmax precision) and RotaryEmbedding."""
from __future__ import annotations
import math
from lucidgrad import Tensor, dtypes
from lucidgrad.onnx.ops import onnx_op
from lucidgrad.onnx.ops.common import given, onnx_dtype

def _heads(x: Tensor, n: int) -> Tensor:
  """(B, S, n*D) -> (B, n, S, D)."""
  b, s, h = x.shape
  return x.reshape(b, s, n, h // n).permute(0, 2, 1, 3)

def _masked_softmax(x: Tensor) -> Tensor:
  """Softmax over the last axis where a row of only -inf gives zeros (it has no key to attend), not NaN."""
  m = x.amax(-1, keepdim=True)
  m = (m == -math.inf).where(Tensor.zeros_like(m), m)
  e = (x - m).exp()
  s = e.sum(-1, keepdim=True)
  return e / (s == 0).where(Tensor.ones_like(s), s)

@onnx_op("Attention", 23)
def attention(ctx, inputs, attrs):
  q, k, v = inputs[:3]
  mask, past_k, past_v, nonpad = (given(inputs, i) for i in (3, 4, 5, 6))
  three_d = q.ndim == 3
  if three_d: q, k, v = _heads(q, attrs["q_num_heads"]), _heads(k, attrs["kv_num_heads"]), _heads(v, attrs["kv_num_heads"])
  dt = q.dtype
  scale = attrs.get("scale", 1 / math.sqrt(q.shape[3]))
  root = Tensor(math.sqrt(scale), device=q.device).cast(dt)  # the scale goes half on Q and half on K, as the reference does
  if past_k is not None: k = Tensor.cat(past_k, k, dim=2)
  if past_v is not None: v = Tensor.cat(past_v, v, dim=2)
  present_k, present_v = k, v
  B, (Sq, Skv) = q.shape[0], (q.shape[2], k.shape[2])
  bias = Tensor.zeros(Sq, Skv, dtype=dt, device=q.device)
  if mask is not None:
    if (pad := Skv - mask.shape[-1]) > 0:
      mask = mask.pad([(0, 0)] * (mask.ndim - 1) + [(0, pad)], value=False if mask.dtype == dtypes.bool else -math.inf)
    if mask.dtype == dtypes.bool: mask = mask.where(Tensor.zeros(1, dtype=dt, device=q.device), Tensor.full((1,), -math.inf, dtype=dt, device=q.device))
    bias = bias + mask.cast(dt)
  # the causal frontier and windows are aligned to the end: a query block sits after `offset` earlier keys
  i, j = Tensor.arange(Sq, device=q.device).reshape(Sq, 1), Tensor.arange(Skv, device=q.device).reshape(1, Skv)
  if past_k is None and nonpad is not None: offset = (nonpad.cast(dtypes.int64) - Sq).reshape(-1, 1, 1, 1)
  else: offset = past_k.shape[2] if past_k is not None else 0
  allowed = None
  if attrs.get("is_causal", 0): allowed = j <= i + offset
  left, right = attrs.get("left_window_size", -1), attrs.get("right_window_size", -1)
  if left >= 0: allowed = ((i + offset) - j <= left) if allowed is None else allowed & ((i + offset) - j <= left)
  if right >= 0: allowed = (j - (i + offset) <= right) if allowed is None else allowed & (j - (i + offset) <= right)
  if allowed is not None: bias = allowed.where(bias, Tensor.full((1,), -math.inf, dtype=dt, device=q.device))
  if nonpad is not None:
    keep = Tensor.arange(Skv, device=q.device).reshape(1, 1, 1, Skv) < nonpad.cast(dtypes.int64).reshape(B, 1, 1, 1)
    bias = keep.where(bias, Tensor.full((1,), -math.inf, dtype=dt, device=q.device))
  hq, hk = q.shape[1], k.shape[1]
  if hq != hk:
    if hq % hk: raise ValueError(f"ONNX Attention: {hq} query heads is not a multiple of {hk} key/value heads")
    k, v = k.repeat_interleave(hq // hk, dim=1), v.repeat_interleave(hq // hk, dim=1)
  qk = (q * root) @ (k * root).transpose(-1, -2)
  if (cap := attrs.get("softcap", 0.0)) and cap > 0: qk = (qk / cap).tanh() * cap
  with_bias = qk + bias
  mode = attrs.get("qk_matmul_output_mode", 0)
  sm_in = with_bias.cast(onnx_dtype(attrs["softmax_precision"], "Attention")) if attrs.get("softmax_precision") else with_bias
  probs = _masked_softmax(sm_in)
  row_masked = bias.amax(-1, keepdim=True) == -math.inf
  probs = row_masked.where(Tensor.zeros_like(probs), probs).cast(dt)
  out = probs @ v
  if three_d: out = out.permute(0, 2, 1, 3).reshape(out.shape[0], out.shape[2], -1)
  qk_out = {0: qk, 1: qk, 2: with_bias, 3: probs}.get(mode)
  if qk_out is None: raise ValueError(f"ONNX Attention: unknown qk_matmul_output_mode {mode}")
  return [out, present_k, present_v, qk_out.cast(dt)]

@onnx_op("RotaryEmbedding", 23)
def rotary_embedding(ctx, inputs, attrs):
  x, cos, sin, pos = inputs[0], inputs[1], inputs[2], given(inputs, 3)
  shape = x.shape
  x = x.permute(0, 2, 1, 3) if x.ndim == 4 else x.reshape(shape[0], shape[1], attrs["num_heads"], -1)  # (B, S, H, D)
  d = attrs.get("rotary_embedding_dim", 0) or x.shape[3]
  if pos is not None: cos, sin = cos[pos.cast(dtypes.int64)], sin[pos.cast(dtypes.int64)]
  if cos.shape[-1] != d // 2: raise ValueError(f"ONNX RotaryEmbedding: cos_cache's last dim {cos.shape[-1]} is not rotary_embedding_dim/2 = {d // 2}")
  cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
  rot, rest = x[..., :d], x[..., d:]
  if attrs.get("interleaved", 0): x1, x2 = rot[..., 0::2], rot[..., 1::2]
  else: x1, x2 = rot[..., :d // 2], rot[..., d // 2:]
  re, im = cos * x1 - sin * x2, sin * x1 + cos * x2
  rot = Tensor.stack(re, im, dim=-1).reshape(rot.shape) if attrs.get("interleaved", 0) else Tensor.cat(re, im, dim=-1)
  out = Tensor.cat(rot, rest, dim=-1)
  return [out.reshape(shape) if len(shape) == 3 else out.permute(0, 2, 1, 3)]

@onnx_op("LinearAttention", 27)
def linear_attention(ctx, inputs, attrs):
  q, k, v = inputs[:3]
  past, decay, beta = given(inputs, 3), given(inputs, 4), given(inputs, 5)
  rule = attrs.get("update_rule", "gated_delta")
  if rule not in ("linear", "gated", "delta", "gated_delta"): raise ValueError(f"ONNX LinearAttention: unknown update_rule {rule!r}")
  hq, hk = attrs["q_num_heads"], attrs["kv_num_heads"]
  if hq % hk: raise ValueError(f"ONNX LinearAttention: q_num_heads {hq} is not a multiple of kv_num_heads {hk}")
  gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
  if gated != (decay is not None) or delta != (beta is not None):
    raise ValueError(f"ONNX LinearAttention: update_rule {rule!r} needs {'decay ' if gated else ''}{'beta' if delta else ''} and no other gate input")
  B, T, _ = q.shape
  f32 = dtypes.float32
  q4, k4, v4 = _heads(q, hq).cast(f32), _heads(k, hk).cast(f32), _heads(v, hk).cast(f32)
  dk, dv = q4.shape[3], v4.shape[3]
  if decay is not None:
    decay4 = (decay.reshape(B, T, hk, 1).permute(0, 2, 1, 3) if decay.shape[-1] == hk else _heads(decay, hk)).cast(f32)
  if beta is not None: beta4 = beta.reshape(B, T, beta.shape[-1], 1).permute(0, 2, 1, 3).cast(f32)
  state = past.cast(f32) if past is not None else Tensor.zeros(B, hk, dk, dv, dtype=f32, device=q.device)
  scale = attrs.get("scale", 0.0) or 1 / math.sqrt(dk)
  outs = []
  for t in range(T):  # the recurrence over time, unrolled
    kt, vt = k4[:, :, t], v4[:, :, t]
    if gated: state = state * decay4[:, :, t].exp().unsqueeze(-1)
    if delta: vt = beta4[:, :, t] * (vt - (state * kt.unsqueeze(-1)).sum(2))
    state = state + kt.unsqueeze(-1) * vt.unsqueeze(-2)
    read = state.repeat_interleave(hq // hk, dim=1) if hq != hk else state
    outs.append((q4[:, :, t].unsqueeze(-1) * read).sum(2) * scale)
  out = Tensor.stack(*outs, dim=2).permute(0, 2, 1, 3).reshape(B, T, hq * dv)
  return [out.cast(q.dtype), state.cast(past.dtype if past is not None else q.dtype)]

@onnx_op("FlexAttention", 1, "ai.onnx.preview")
def flex_attention(ctx, inputs, attrs):
  q, k, v = inputs
  if q.ndim != 4 or k.ndim != 4 or v.ndim != 4: raise ValueError(f"ONNX FlexAttention: Q, K, V must be rank 4, got {q.shape}, {k.shape}, {v.shape}")
  hq, hk = q.shape[1], k.shape[1]
  if hq != hk:
    if hq % hk: raise ValueError(f"ONNX FlexAttention: {hq} query heads is not a multiple of {hk} key/value heads")
    k, v = k.repeat_interleave(hq // hk, dim=1), v.repeat_interleave(hq // hk, dim=1)
  root = Tensor(math.sqrt(attrs.get("scale", 1 / math.sqrt(q.shape[3]))), device=q.device).cast(q.dtype)
  # the softmax runs in float32 at least (half types are promoted), or in softmax_precision
  sdt = onnx_dtype(attrs["softmax_precision"], "FlexAttention") if "softmax_precision" in attrs else \
    (dtypes.float32 if q.dtype.itemsize < 4 else q.dtype)
  scores = ((q * root) @ (k * root).transpose(-1, -2)).cast(sdt)
  # score_mod / prob_mod are one-input graphs run by the runner
  if "score_mod" in attrs: scores = ctx.run_graph(attrs["score_mod"], [scores])[0].cast(sdt)
  probs = scores.softmax(-1)
  if "prob_mod" in attrs: probs = ctx.run_graph(attrs["prob_mod"], [probs])[0].cast(sdt)
  return [(probs @ v.cast(sdt)).cast(v.dtype)]
