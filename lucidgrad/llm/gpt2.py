"""The GPT-2 decoder (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"): learned positions,
pre-norm blocks of LayerNorm, causal attention and a tanh-GELU feed-forward, the output tied to the token embedding.
Weights come from a safetensors checkpoint under the Hugging Face names (`h.0.attn.c_attn.weight`, ...); keys and values
of past positions are kept in a preallocated cache written in place, as llama.py does."""
from __future__ import annotations
import json, math, pathlib
from dataclasses import dataclass
from typing import Iterator
from lucidgrad import Tensor, dtypes
from lucidgrad.llm.sampling import Sampling, generate

@dataclass(frozen=True)
class GPT2Config:
  """The hyper-parameters of a GPT-2 model. context_length is the number of learned positions (the rows of wpe)."""
  n_layers: int
  n_heads: int
  dim: int
  vocab_size: int
  context_length: int
  norm_eps: float = 1e-5

  def __post_init__(self):
    for k in ("n_layers", "n_heads", "dim", "vocab_size", "context_length"):
      if not (isinstance(v := getattr(self, k), int) and v > 0): raise ValueError(f"GPT2Config: {k} must be a positive int, got {v!r}")
    if self.dim % self.n_heads: raise ValueError(f"GPT2Config: dim {self.dim} is not a multiple of n_heads {self.n_heads}")

  @property
  def head_dim(self) -> int: return self.dim // self.n_heads

  @staticmethod
  def gpt2_124m() -> GPT2Config:
    """OpenAI's smallest GPT-2: 12 layers of 12 heads, width 768, 50257 tokens, 1024 positions."""
    return GPT2Config(12, 12, 768, 50257, 1024)

  @staticmethod
  def from_hf(config: dict) -> GPT2Config:
    """The config a Hugging Face `config.json` of a GPT-2 checkpoint describes (n_layer, n_head, n_embd, ...)."""
    try:
      return GPT2Config(config["n_layer"], config["n_head"], config["n_embd"], config["vocab_size"], config["n_positions"],
                        float(config.get("layer_norm_epsilon", 1e-5)))
    except KeyError as e: raise ValueError(f"GPT2Config.from_hf: the config has no {e.args[0]!r}") from None

  @staticmethod
  def from_weights(weights: dict[str, Tensor], head_dim: int = 64) -> GPT2Config:
    """The config the shapes of (Hugging Face named) weights imply. The shapes do not hold the number of heads: it is
    dim // head_dim, and every OpenAI GPT-2 (124M to 1.5B) has heads of 64."""
    w = _canonical(weights)
    for n in ("wte.weight", "wpe.weight"):
      if n not in w or w[n].ndim != 2: raise ValueError(f"GPT2Config.from_weights: no 2-D {n} among the weights")
    (vocab, dim), context = w["wte.weight"].shape, w["wpe.weight"].shape[0]
    if dim % head_dim: raise ValueError(f"GPT2Config.from_weights: width {dim} is not a multiple of head_dim {head_dim}; pass a GPT2Config")
    layers = {int(n.split(".")[1]) for n in w if n.startswith("h.") and n.split(".")[1].isdigit()}
    return GPT2Config(len(layers), dim // head_dim, dim, vocab, context)

def _canonical(weights: dict[str, Tensor]) -> dict[str, Tensor]:
  """The weights under GPT2Model's names: a `transformer.` prefix dropped; the causal-mask buffers (`h.i.attn.bias`,
  `h.i.attn.masked_bias`) and the output `lm_head.weight` (tied to wte, so the same values) left out."""
  out = {}
  for n, t in weights.items():
    n = n.removeprefix("transformer.")
    parts = n.split(".")
    if n == "lm_head.weight" or (len(parts) == 4 and parts[0] == "h" and parts[2] == "attn" and parts[3] in ("bias", "masked_bias")): continue
    out[n] = t
  return out

def _weight_shapes(cfg: GPT2Config) -> dict[str, tuple[int, ...]]:
  """Every weight's name and shape. Linear layers are Conv1D as OpenAI stored them: weight (in, out), y = x @ W + b."""
  D = cfg.dim
  shapes: dict[str, tuple[int, ...]] = {"wte.weight": (cfg.vocab_size, D), "wpe.weight": (cfg.context_length, D), "ln_f.weight": (D,), "ln_f.bias": (D,)}
  for i in range(cfg.n_layers):
    for n, (a, b) in {"attn.c_attn": (D, 3 * D), "attn.c_proj": (D, D), "mlp.c_fc": (D, 4 * D), "mlp.c_proj": (4 * D, D)}.items():
      shapes |= {f"h.{i}.{n}.weight": (a, b), f"h.{i}.{n}.bias": (b,)}
    shapes |= {f"h.{i}.{ln}.{p}": (D,) for ln in ("ln_1", "ln_2") for p in ("weight", "bias")}
  return shapes

class GPT2:
  """`model(tokens, start_pos)`: the logits (B, T, vocab) of tokens (B, T) placed at positions start_pos.. of the cache,
  whose keys and values are written there. `max_context` bounds the cache (default and at most: the config's
  context_length, the positions wpe has)."""
  def __init__(self, cfg: GPT2Config, weights: dict[str, Tensor], max_context: int | None = None, batch: int = 1):
    w, shapes = _canonical(weights), _weight_shapes(cfg)
    if missing := [n for n in shapes if n not in w]: raise ValueError(f"GPT2: the weights lack {len(missing)} tensor(s), e.g. {missing[:3]}")
    if extra := [n for n in w if n not in shapes]: raise ValueError(f"GPT2: {len(extra)} weight(s) the config has no place for, e.g. {extra[:3]}")
    for n, shape in shapes.items():
      if w[n].shape != shape: raise ValueError(f"GPT2: {n} has shape {w[n].shape}, the config needs {shape}")
      if not w[n].dtype.is_float(): raise ValueError(f"GPT2: {n} has dtype {w[n].dtype}, not a float")
    max_context = cfg.context_length if max_context is None else max_context
    if not 0 < max_context <= cfg.context_length:
      raise ValueError(f"GPT2: max_context must be in 1..{cfg.context_length} (the learned positions), got {max_context}")
    if batch < 1: raise ValueError(f"GPT2: batch must be >= 1, got {batch}")
    # half or bfloat16 checkpoints are computed in float32: cast once here, not on every call
    self.w = {n: t if t.dtype == dtypes.float32 else t.float().contiguous().realize() for n, t in w.items()}
    self.cfg, self.batch, self.max_context = cfg, batch, max_context
    shape = (batch, cfg.n_heads, max_context, cfg.head_dim)
    self.cache = [(Tensor.zeros(*shape).contiguous().realize(), Tensor.zeros(*shape).contiguous().realize()) for _ in range(cfg.n_layers)]

  @staticmethod
  def from_safetensors(path, cfg: GPT2Config | None = None, max_context: int | None = None, batch: int = 1) -> GPT2:
    """The model of a safetensors checkpoint (Hugging Face names, with or without `transformer.`). Without `cfg`, a
    `config.json` beside the file gives it, else the weights' shapes (GPT2Config.from_weights: heads of 64)."""
    from lucidgrad.nn.state import safe_load
    weights = safe_load(path)
    if cfg is None:
      beside = pathlib.Path(path).with_name("config.json") if isinstance(path, (str, pathlib.Path)) else None
      cfg = GPT2Config.from_hf(json.loads(beside.read_text())) if beside is not None and beside.is_file() else GPT2Config.from_weights(weights)
    return GPT2(cfg, weights, max_context, batch)

  def _linear(self, x: Tensor, name: str) -> Tensor: return x @ self.w[f"{name}.weight"] + self.w[f"{name}.bias"]
  def _norm(self, x: Tensor, name: str) -> Tensor: return x.layer_norm(self.cfg.dim, self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.cfg.norm_eps)

  def _attention(self, i: int, x: Tensor, start_pos: int) -> Tensor:
    B, T, _ = x.shape
    H, D = self.cfg.n_heads, self.cfg.head_dim
    q, k, v = (t.reshape(B, T, H, D).transpose(1, 2) for t in self._linear(x, f"h.{i}.attn.c_attn").chunk(3, -1))
    ck, cv = self.cache[i]
    end = start_pos + T
    ck[:, :, start_pos:end] = k
    cv[:, :, start_pos:end] = v
    keys, values = ck[:, :, :end], cv[:, :, :end]
    scores = (q @ keys.transpose(2, 3)) * (1 / math.sqrt(D))
    if T > 1:  # query t (position start_pos + t) sees keys up to its own position: the mask is (T, start_pos + T)
      scores = scores + Tensor.full((T, T), -math.inf).triu(1).pad(((0, 0), (start_pos, 0)))
    out = (scores.softmax(-1) @ values).transpose(1, 2).reshape(B, T, H * D)
    return self._linear(out, f"h.{i}.attn.c_proj")

  def __call__(self, tokens: Tensor, start_pos: int = 0, last_only: bool = False, pick: Tensor | None = None) -> Tensor:
    """Logits (B, T, vocab) for tokens (B, T) at positions start_pos..start_pos+T-1 (only the last position's, (B, 1,
    vocab), with last_only; with `pick`, (B, T) one-hot float rows, only the picked position's: a jitted chunked
    prefill's last real token); the cache holds these positions' keys and values afterwards."""
    if tokens.ndim != 2 or tokens.shape[0] != self.batch or tokens.shape[1] == 0:
      raise ValueError(f"GPT2: tokens must have shape (batch={self.batch}, T >= 1), got {tokens.shape}")
    T = tokens.shape[1]
    # start_pos: an int, or a bound Variable (a jitted decode step), whose whole range must fit the cache
    lo, hi = getattr(start_pos, "vmin", start_pos), getattr(start_pos, "vmax", start_pos)
    if not (0 <= lo and hi + T <= self.max_context):
      raise ValueError(f"GPT2: positions {lo}..{hi + T - 1} are outside the cache of {self.max_context}")
    x = tokens.embedding(self.w["wte.weight"]) + self.w["wpe.weight"][start_pos:start_pos + T]
    for i in range(self.cfg.n_layers):
      x = x + self._attention(i, self._norm(x, f"h.{i}.ln_1"), start_pos)
      x = x + self._linear(self._linear(self._norm(x, f"h.{i}.ln_2"), f"h.{i}.mlp.c_fc").gelu("tanh"), f"h.{i}.mlp.c_proj")
    if last_only: x = x[:, -1:]
    elif pick is not None: x = pick.reshape(pick.shape[0], 1, pick.shape[1]) @ x
    return self._norm(x, "ln_f") @ self.w["wte.weight"].T

  def generate(self, prompt: list[int], max_new_tokens: int, how: Sampling = Sampling(), stop: tuple[int, ...] = ()) -> Iterator[int]:
    """The next tokens after `prompt` (batch 1), one at a time as each is chosen, until max_new_tokens or a token in
    `stop` (yielded, then the end). The prompt fills the cache from position 0 (the loop: llm.sampling.generate)."""
    return generate(self, prompt, max_new_tokens, how, stop)
