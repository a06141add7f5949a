"""Choosing the next token from a model's logits, on the logits' device: greedy, temperature, top-k, top-p (nucleus) and a
repetition penalty, then one draw by the Gumbel-max trick (the argmax of logits plus Gumbel noise is a draw from their
softmax), so only the chosen token's id comes back to the host. `generate` is the decode loop every model here shares."""
from __future__ import annotations
import math
from dataclasses import dataclass
from typing import Iterator, Protocol
import numpy as np
from lucidgrad import Tensor, Variable, dtypes, jit

@dataclass(frozen=True)
class Sampling:
  """temperature 0 is greedy (the others are then unused but the penalty); top_k 0 and top_p 1 keep every token;
  repetition_penalty > 1 makes tokens already in the text less likely (a positive logit divided by it, a negative one
  multiplied), as the CTRL paper (Keskar et al. 2019) and llama.cpp do."""
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0
  repetition_penalty: float = 1.0
  def __post_init__(self):
    if not self.temperature >= 0: raise ValueError(f"Sampling: temperature must be >= 0, got {self.temperature}")
    if self.top_k < 0: raise ValueError(f"Sampling: top_k must be >= 0 (0: off), got {self.top_k}")
    if not 0 < self.top_p <= 1: raise ValueError(f"Sampling: top_p must be in (0, 1], got {self.top_p}")
    if not self.repetition_penalty > 0: raise ValueError(f"Sampling: repetition_penalty must be > 0, got {self.repetition_penalty}")

def sample(logits: Tensor, how: Sampling = Sampling(), seen: Tensor | None = None) -> Tensor:
  """Token ids (B,) int32 drawn from logits (B, vocab). `seen` (B, vocab) bool marks the tokens the repetition penalty
  applies to. Random draws use the global generator (Tensor.manual_seed)."""
  if logits.ndim != 2: raise ValueError(f"sample: logits must be (batch, vocab), got shape {logits.shape}")
  logits = logits.float()
  if how.repetition_penalty != 1 and seen is not None:
    logits = seen.where((logits > 0).where(logits / how.repetition_penalty, logits * how.repetition_penalty), logits)
  if how.temperature == 0: return logits.argmax(-1).cast(dtypes.int32)
  logits = logits / how.temperature
  vocab = logits.shape[-1]
  if 0 < how.top_k < vocab:
    kth = logits.topk(how.top_k, dim=-1).values[:, -1:]
    logits = (logits < kth).where(-math.inf, logits)
  if how.top_p < 1:
    ordered = logits.sort(-1, descending=True)[0]
    probs = ordered.softmax(-1)
    # keep the most likely tokens until their mass reaches top_p (the token that crosses it included)
    before = probs.cumsum(-1) - probs
    kept = (before < how.top_p).sum(-1, keepdim=True)
    least = ordered.gather(-1, (kept - 1).cast(dtypes.int32))
    logits = (logits < least).where(-math.inf, logits)
  u = Tensor.rand(*logits.shape, device=logits.device).clip(1e-20, 1.0)
  return (logits - (-u.log()).log()).argmax(-1).cast(dtypes.int32)

class Decoder(Protocol):
  """A model with a KV cache: `model(tokens (1, T), start_pos, last_only, pick)` gives the logits (1, T or 1, vocab) of
  tokens placed at positions start_pos.. and keeps their keys and values; positions stop before `max_context`."""
  max_context: int
  def __call__(self, tokens: Tensor, start_pos: int = 0, last_only: bool = False, pick: Tensor | None = None) -> Tensor: ...

PREFILL_CHUNK = 128  # prompt tokens a jitted prefill step takes (the last chunk padded): one capture serves every prompt

def _jitted(model, key, make):
  """The jitted function `make()` kept on the model under `key`: a capture outlives one generate call (a chat's second
  question replays the first one's prefill and decode steps)."""
  jits = model.__dict__.setdefault("_jits", {})
  if (f := jits.get(key)) is None: f = jits[key] = make()
  return f

def decode_step(model: Decoder, how: Sampling = Sampling()):
  """A jitted decode step for batch 1: `step(token (1, 1) int32, pos, seen (1, vocab) bool)` runs `token` at position
  `pos` (a bound Variable "start_pos" in [0, max_context - 1]), draws the next token (1,) int32 and marks it in `seen`
  (written in place, for the repetition penalty). From the third call on it replays: no schedule, no compile, whatever
  the position (the Variable's value is a kernel argument; docs/design/0029). Kept on the model, one per `how`."""
  def step(token: Tensor, pos, seen: Tensor) -> Tensor:
    nxt = sample(model(token, pos, last_only=True)[:, -1], how, seen)
    seen.assign(seen | (Tensor.arange(seen.shape[-1]).reshape(1, -1) == nxt.reshape(1, 1)))
    return nxt.realize(seen)
  return _jitted(model, ("decode", how), lambda: jit(step))

def prefill(model: Decoder, prompt: list[int]) -> Tensor:
  """The logits (1, vocab) after `prompt`, its keys and values written to the cache from position 0: in chunks of
  PREFILL_CHUNK tokens, each a replay of one jitted step at a bound position (the last chunk padded; the padding's keys
  land past the prompt, where each decode step writes its own before it reads); a chunk too near the cache's end for a
  whole one runs unjitted."""
  C = PREFILL_CHUNK
  # a cache of one chunk or less has no positions for the chunk's start to move over: one call, unjitted
  if model.max_context <= C: return model(Tensor([prompt]), 0, last_only=True)[:, -1]
  step = _jitted(model, "prefill", lambda: jit(lambda toks, pos, pick: model(toks, pos, pick=pick)[:, -1].realize()))
  start = Variable("prefill_pos", 0, model.max_context - C)
  for c0 in range(0, len(prompt), C):
    chunk = prompt[c0:c0 + C]
    if c0 + C > model.max_context:  # the prompt's tail, too near the cache's end for a whole chunk
      logits = model(Tensor([chunk]), c0, last_only=True)[:, -1]
      continue
    pick = [[float(i == len(chunk) - 1) for i in range(C)]]
    logits = step(Tensor([chunk + [0] * (C - len(chunk))], dtype=dtypes.int32), start.bind(c0), Tensor(pick))
  return logits

def generate(model: Decoder, prompt: list[int], max_new_tokens: int, how: Sampling = Sampling(), stop: tuple[int, ...] = ()) -> Iterator[int]:
  """The next tokens after `prompt` (batch 1), one at a time as each is chosen, until max_new_tokens or a token in
  `stop` (yielded, then the end). The prompt fills the model's cache from position 0 (`prefill`: jitted chunks); each
  later token is a replay of one jitted decode step at a bound position. Errors name `Model.generate`."""
  name = f"{type(model).__name__}.generate"
  if not prompt: raise ValueError(f"{name}: the prompt is empty")
  if len(prompt) + max_new_tokens > model.max_context:
    raise ValueError(f"{name}: {len(prompt)} prompt tokens and {max_new_tokens} new ones exceed the cache of {model.max_context}")
  logits = prefill(model, prompt)
  vocab = logits.shape[-1]
  # the tokens seen so far, marked on the host: a graph of the prompt's shape or of the token's index would be a
  # schedule of its own for each prompt
  marks = np.zeros((1, vocab), np.bool_)
  marks[0, prompt] = True
  t = int(sample(logits, how, Tensor(marks, device=logits.device)).item())
  marks[0, t] = True
  seen = Tensor(marks, device=logits.device).realize()
  step, start_pos = decode_step(model, how), Variable("start_pos", 0, model.max_context - 1)
  for i in range(max_new_tokens):
    yield t
    if t in stop or i == max_new_tokens - 1: return
    t = int(step(Tensor([[t]], dtype=dtypes.int32), start_pos.bind(len(prompt) + i), seen).item())
