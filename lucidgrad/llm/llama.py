"""A llama-architecture decoder (Touvron et al. 2023, "LLaMA"): pre-norm blocks of RMSNorm, attention with rotary
positions (RoPE) and grouped key/value heads, and a SwiGLU feed-forward; the output projection may be tied to the token
embedding. Weights come from a GGUF file (any `general.architecture` llama checkpoint) or a dict of tensors under the
GGUF names; keys and values of past positions are kept in a preallocated cache written in place."""
from __future__ import annotations
import math
from dataclasses import dataclass
from typing import Callable, Iterator
from lucidgrad import Tensor, Variable, dtypes
from lucidgrad.llm.sampling import Sampling, decode_step, generate

@dataclass(frozen=True)
class LlamaConfig:
  """The hyper-parameters of a llama model. `rope_pairs` says which elements RoPE rotates together: "adjacent" (2i, 2i+1),
  as GGUF files store their query/key weights, or "halves" (i, i + head_dim/2), as Hugging Face checkpoints do."""
  n_layers: int
  dim: int
  n_heads: int
  n_kv_heads: int
  ffn_dim: int
  vocab_size: int
  context_length: int = 2048
  rope_base: float = 10000.0
  norm_eps: float = 1e-5
  rope_pairs: str = "adjacent"

  @property
  def head_dim(self) -> int: return self.dim // self.n_heads

  @staticmethod
  def from_gguf(metadata: dict) -> LlamaConfig:
    """The config a GGUF file's metadata describes (`llama.block_count`, `llama.embedding_length`, ...)."""
    arch = metadata.get("general.architecture")
    if arch != "llama": raise ValueError(f"LlamaConfig.from_gguf: the file's general.architecture is {arch!r}, not 'llama'")
    def get(key: str, default=None):
      if (v := metadata.get(f"llama.{key}", default)) is None: raise ValueError(f"LlamaConfig.from_gguf: the metadata has no llama.{key}")
      return v
    vocab = metadata.get("llama.vocab_size") or len(metadata.get("tokenizer.ggml.tokens", ()))
    if not vocab: raise ValueError("LlamaConfig.from_gguf: the metadata has neither llama.vocab_size nor tokenizer.ggml.tokens")
    heads = get("attention.head_count")
    cfg = LlamaConfig(get("block_count"), get("embedding_length"), heads, get("attention.head_count_kv", heads), get("feed_forward_length"),
                      vocab, get("context_length", 2048), float(get("rope.freq_base", 10000.0)), float(get("attention.layer_norm_rms_epsilon", 1e-5)))
    if (rd := metadata.get("llama.rope.dimension_count")) is not None and rd != cfg.head_dim:
      raise ValueError(f"LlamaConfig.from_gguf: RoPE over {rd} of each head's {cfg.head_dim} dimensions is not supported")
    return cfg

def _weight_names(cfg: LlamaConfig) -> list[str]:
  per_layer = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]
  return ["token_embd.weight", "output_norm.weight"] + [f"blk.{i}.{n}.weight" for i in range(cfg.n_layers) for n in per_layer]

class Llama:
  """`model(tokens, start_pos)`: the logits (B, T, vocab) of tokens (B, T) placed at positions start_pos.. of the cache,
  whose keys and values are written there. `max_context` bounds the cache (default: the config's context length)."""
  def __init__(self, cfg: LlamaConfig, weights: dict[str, Tensor], max_context: int | None = None, batch: int = 1):
    missing = [n for n in _weight_names(cfg) if n not in weights]
    if missing: raise ValueError(f"Llama: the weights lack {len(missing)} tensor(s), e.g. {missing[:3]}")
    expect = {"token_embd.weight": (cfg.vocab_size, cfg.dim), "blk.0.attn_q.weight": (cfg.dim, cfg.dim),
              "blk.0.attn_k.weight": (cfg.n_kv_heads * cfg.head_dim, cfg.dim), "blk.0.ffn_down.weight": (cfg.dim, cfg.ffn_dim)}
    for n, shape in expect.items():
      if weights[n].shape != shape: raise ValueError(f"Llama: {n} has shape {weights[n].shape}, the config needs {shape}")
    if cfg.n_heads % cfg.n_kv_heads: raise ValueError(f"Llama: {cfg.n_heads} query heads cannot share {cfg.n_kv_heads} key/value heads")
    self.cfg, self.w, self.batch = cfg, weights, batch
    self.output = weights.get("output.weight", weights["token_embd.weight"])  # tied to the embedding when the file has none
    self.max_context = max_context or cfg.context_length
    # RoPE's angles for every position the cache holds: position p, pair i turns by p * base^(-2i/head_dim)
    half = cfg.head_dim // 2
    freqs = Tensor.arange(half, dtype=dtypes.float32).mul(-2 * math.log(cfg.rope_base) / cfg.head_dim).exp()
    angles = Tensor.arange(self.max_context, dtype=dtypes.float32).reshape(-1, 1) * freqs.reshape(1, -1)
    self.cos, self.sin = angles.cos().contiguous().realize(), angles.sin().contiguous().realize()
    shape = (batch, cfg.n_kv_heads, self.max_context, cfg.head_dim)
    self.cache = [(Tensor.zeros(*shape).contiguous().realize(), Tensor.zeros(*shape).contiguous().realize()) for _ in range(cfg.n_layers)]

  @staticmethod
  def from_gguf(path, max_context: int | None = None, batch: int = 1) -> tuple[Llama, dict]:
    """(the model, the file's metadata) of a llama GGUF file. Quantised weights stay lazy: each use unpacks its blocks."""
    from lucidgrad.nn.state import gguf_load
    metadata, weights = gguf_load(path)
    return Llama(LlamaConfig.from_gguf(metadata), weights, max_context, batch), metadata

  def _rope(self, x: Tensor, start_pos: int) -> Tensor:
    """x (B, heads, T, head_dim) turned by the angles of positions start_pos.."""
    T, half = x.shape[2], self.cfg.head_dim // 2
    cos, sin = self.cos[start_pos:start_pos + T], self.sin[start_pos:start_pos + T]
    if self.cfg.rope_pairs == "adjacent":
      pairs = x.reshape(*x.shape[:-1], half, 2)
      a, b = pairs[..., 0], pairs[..., 1]
      return Tensor.stack(a * cos - b * sin, a * sin + b * cos, dim=-1).reshape(x.shape)
    a, b = x[..., :half], x[..., half:]
    return (a * cos - b * sin).cat(a * sin + b * cos, dim=-1)

  def _attention(self, i: int, x: Tensor, start_pos: int) -> Tensor:
    cfg, w = self.cfg, self.w
    B, T, _ = x.shape
    H, KV, D = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    q = (x @ w[f"blk.{i}.attn_q.weight"].T).reshape(B, T, H, D).transpose(1, 2)
    k = (x @ w[f"blk.{i}.attn_k.weight"].T).reshape(B, T, KV, D).transpose(1, 2)
    v = (x @ w[f"blk.{i}.attn_v.weight"].T).reshape(B, T, KV, D).transpose(1, 2)
    q, k = self._rope(q, start_pos), self._rope(k, start_pos)
    ck, cv = self.cache[i]
    end = start_pos + T
    ck[:, :, start_pos:end] = k
    cv[:, :, start_pos:end] = v
    keys, values = ck[:, :, :end], cv[:, :, :end]
    # each key/value head serves G query heads: the G heads' queries become rows of one product with that head's keys
    G = H // KV
    q = q.reshape(B, KV, G * T, D)
    scores = (q @ keys.transpose(2, 3)) * (1 / math.sqrt(D))
    if T > 1:  # query t (position start_pos + t) sees keys up to its own position: the mask is (T, start_pos + T)
      mask = Tensor.full((T, T), -math.inf).triu(1).pad(((0, 0), (start_pos, 0)))
      scores = (scores.reshape(B, KV, G, T, end) + mask).reshape(B, KV, G * T, end)
    out = scores.softmax(-1) @ values  # (B, KV, G*T, D)
    out = out.reshape(B, H, T, D).transpose(1, 2).reshape(B, T, H * D)
    return out @ w[f"blk.{i}.attn_output.weight"].T

  def __call__(self, tokens: Tensor, start_pos: int = 0, last_only: bool = False, pick: Tensor | None = None) -> Tensor:
    """Logits (B, T, vocab) for tokens (B, T) at positions start_pos..start_pos+T-1 (only the last position's, (B, 1,
    vocab), with last_only; with `pick`, (B, T) one-hot float rows, only the picked position's: a jitted chunked
    prefill's last real token); the cache holds these positions' keys and values afterwards."""
    cfg, w = self.cfg, self.w
    if tokens.ndim != 2 or tokens.shape[0] != self.batch:
      raise ValueError(f"Llama: tokens must have shape (batch={self.batch}, T), got {tokens.shape}")
    T = tokens.shape[1]
    # start_pos: an int, or a bound Variable (a jitted decode step), whose whole range must fit the cache
    lo, hi = getattr(start_pos, "vmin", start_pos), getattr(start_pos, "vmax", start_pos)
    if not (0 <= lo and hi + T <= self.max_context):
      raise ValueError(f"Llama: positions {lo}..{hi + T - 1} are outside the cache of {self.max_context}")
    x = tokens.embedding(w["token_embd.weight"])
    for i in range(cfg.n_layers):
      x = x + self._attention(i, x.rms_norm(cfg.dim, w[f"blk.{i}.attn_norm.weight"], cfg.norm_eps), start_pos)
      h = x.rms_norm(cfg.dim, w[f"blk.{i}.ffn_norm.weight"], cfg.norm_eps)
      x = x + ((h @ w[f"blk.{i}.ffn_gate.weight"].T).silu() * (h @ w[f"blk.{i}.ffn_up.weight"].T)) @ w[f"blk.{i}.ffn_down.weight"].T
    if last_only: x = x[:, -1:]
    elif pick is not None: x = pick.reshape(pick.shape[0], 1, pick.shape[1]) @ x
    return x.rms_norm(cfg.dim, w["output_norm.weight"], cfg.norm_eps) @ self.output.T

  def generate(self, prompt: list[int], max_new_tokens: int, how: Sampling = Sampling(), stop: tuple[int, ...] = ()) -> Iterator[int]:
    """The next tokens after `prompt` (batch 1), one at a time as each is chosen, until max_new_tokens or a token in
    `stop` (yielded, then the end). The prompt fills the cache from position 0 (the loop: llm.sampling.generate)."""
    return generate(self, prompt, max_new_tokens, how, stop)

  def decoder(self, start_pos: int, how: Sampling = Sampling()) -> Callable[[int], int]:
    """A decode step for batch 1: the token at the next position in (the first at start_pos), the token chosen after it
    out (greedy unless `how` says otherwise). The cache must already hold positions before start_pos. Each call is a
    replay of one jitted step (llm.sampling.decode_step) with the position bound: no schedule, no compile."""
    step, var = decode_step(self, how), Variable("start_pos", 0, self.max_context - 1)
    seen = Tensor.zeros(1, self.cfg.vocab_size, dtype=dtypes.bool).contiguous().realize()
    pos = [start_pos]
    def run(token: int) -> int:
      if pos[0] >= self.max_context: raise ValueError(f"Llama: the cache of {self.max_context} positions is full")
      out = int(step(Tensor([[token]], dtype=dtypes.int32), var.bind(pos[0]), seen).item())
      pos[0] += 1
      return out
    return run
