"""A small character-level transformer trained on text that ships with Python (the help topics of pydoc_data, ~700 kB
of English about Python), with a jitted training step. Prints a falling loss, then a short sample.
  python examples/char_transformer.py            # 300 steps, about two minutes on 2 cores
  STEPS=1000 python examples/char_transformer.py"""
import time
import numpy as np
from lucidgrad import Tensor, jit
from lucidgrad.helpers import getenv, progress, slowest_compile_line
from lucidgrad.nn import Embedding, Linear, LayerNorm
from lucidgrad.nn.optim import AdamW, CosineAnnealingLR
from lucidgrad.nn.state import get_parameters

def load_text() -> str:
  try:
    from pydoc_data.topics import topics
    return "\n".join(topics[k] for k in sorted(topics))
  except ImportError:  # a Python built without its docs: the Zen of Python, decoded
    import codecs, contextlib, io
    with contextlib.redirect_stdout(io.StringIO()): import this
    return codecs.decode(this.s, "rot13") * 20

class Block:
  """Pre-norm transformer block: causal self-attention and a 4x MLP, each added to the residual stream."""
  def __init__(self, dim: int, heads: int):
    self.heads = heads
    self.ln1, self.ln2 = LayerNorm(dim), LayerNorm(dim)
    self.qkv, self.proj = Linear(dim, 3 * dim), Linear(dim, dim)
    self.fc1, self.fc2 = Linear(dim, 4 * dim), Linear(4 * dim, dim)
  def __call__(self, x: Tensor) -> Tensor:
    B, T, C = x.shape
    q, k, v = [t.reshape(B, T, self.heads, C // self.heads).transpose(1, 2) for t in self.qkv(self.ln1(x)).chunk(3, dim=-1)]
    att = q.scaled_dot_product_attention(k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
    x = x + self.proj(att)
    return x + self.fc2(self.fc1(self.ln2(x)).gelu())

class CharTransformer:
  def __init__(self, vocab: int, ctx: int, dim: int = 64, heads: int = 4, layers: int = 2):
    self.tok, self.pos = Embedding(vocab, dim), Embedding(ctx, dim)
    self.blocks = [Block(dim, heads) for _ in range(layers)]
    self.ln, self.head = LayerNorm(dim), Linear(dim, vocab)
  def __call__(self, idx: Tensor) -> Tensor:
    x = self.tok(idx) + self.pos(Tensor.arange(idx.shape[1]).reshape(1, -1))
    for b in self.blocks: x = b(x)
    return self.head(self.ln(x))

def main():
  steps, bs, ctx = getenv("STEPS", 300), getenv("BS", 32), getenv("CTX", 64)
  text = load_text()
  chars = sorted(set(text))
  stoi = {c: i for i, c in enumerate(chars)}
  data = np.array([stoi[c] for c in text], dtype=np.int32)
  print(f"text: {len(text)} characters, {len(chars)} distinct")

  Tensor.manual_seed(0)
  rng = np.random.default_rng(0)
  model = CharTransformer(len(chars), ctx)
  opt = AdamW(get_parameters(model), lr=3e-3, weight_decay=0.01)
  sched = CosineAnnealingLR(opt, T_max=steps, eta_min=3e-4)

  @jit
  def train_step(x: Tensor, y: Tensor) -> Tensor:
    opt.zero_grad()
    loss = model(x).reshape(-1, len(chars)).cross_entropy(y.reshape(-1))
    loss.backward()
    opt.step()
    return loss.realize()

  st, losses = time.perf_counter(), []
  bar = progress(range(steps), desc="training", unit="step")
  for i in bar:
    starts = rng.integers(0, len(data) - ctx - 1, bs)
    x = np.stack([data[s:s + ctx] for s in starts]); y = np.stack([data[s + 1:s + ctx + 1] for s in starts])
    losses.append(train_step(Tensor(x), Tensor(y)).item())
    sched.step()
    if i % 50 == 0 or i == steps - 1:
      msg = f"step {i:4d}  loss {np.mean(losses[-50:]):.3f}"
      bar.set_postfix(msg)
      if not bar.enabled: print(msg)
  bar.close()
  print(f"loss {np.mean(losses[:20]):.3f} -> {np.mean(losses[-20:]):.3f} in {steps} steps, {steps / (time.perf_counter() - st):.1f} steps/s")

  # sampling: one new character per forward pass over the last `ctx` characters; jitted too (the shape never changes,
  # and the random draw inside multinomial is fresh on every replay)
  @jit
  def next_char(x: Tensor) -> Tensor: return (model(x)[0, -1] / 0.8).softmax().multinomial(1).realize()
  out = list(data[:ctx])
  for _ in range(getenv("SAMPLE", 200)): out.append(int(next_char(Tensor(np.array([out[-ctx:]], dtype=np.int32))).item()))
  print("sample:\n" + "".join(chars[i] for i in out[ctx:]))
  print(slowest_compile_line())
  return losses

if __name__ == "__main__":
  main()
