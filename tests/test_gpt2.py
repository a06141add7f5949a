"""The GPT-2 model (lucidgrad/llm/gpt2.py) against a GPT-2 written here in torch with the Hugging Face parameter names:
random weights saved with safetensors.torch and read back by GPT2.from_safetensors; prefill, decode through the KV cache,
greedy generation (with and without a repetition penalty) and the errors of bad checkpoints and calls."""
import json, math
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from lucidgrad import Tensor, dtypes
from lucidgrad.llm.gpt2 import GPT2, GPT2Config
from lucidgrad.llm.sampling import Sampling

class TorchConv1D(torch.nn.Module):
  """OpenAI's linear layer: weight (in, out), y = x @ W + b."""
  def __init__(self, n_in: int, n_out: int):
    super().__init__()
    self.weight, self.bias = torch.nn.Parameter(torch.empty(n_in, n_out)), torch.nn.Parameter(torch.empty(n_out))
  def forward(self, x): return x @ self.weight + self.bias

class TorchAttention(torch.nn.Module):
  def __init__(self, cfg: GPT2Config):
    super().__init__()
    self.cfg, self.c_attn, self.c_proj = cfg, TorchConv1D(cfg.dim, 3 * cfg.dim), TorchConv1D(cfg.dim, cfg.dim)
    # the causal mask as the checkpoints keep it (a buffer named attn.bias), used here so a loader must skip it
    self.register_buffer("bias", torch.tril(torch.ones(cfg.context_length, cfg.context_length, dtype=torch.bool)).view(1, 1, cfg.context_length, -1))
  def forward(self, x):
    B, T, C = x.shape
    H = self.cfg.n_heads
    q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in self.c_attn(x).split(C, -1))
    s = (q @ k.transpose(-1, -2)) / math.sqrt(C // H)
    s = s.masked_fill(~self.bias[:, :, :T, :T], float("-inf"))
    return self.c_proj((s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C))

class TorchBlock(torch.nn.Module):
  def __init__(self, cfg: GPT2Config):
    super().__init__()
    self.ln_1, self.attn = torch.nn.LayerNorm(cfg.dim, cfg.norm_eps), TorchAttention(cfg)
    self.ln_2, self.mlp = torch.nn.LayerNorm(cfg.dim, cfg.norm_eps), torch.nn.Module()
    self.mlp.c_fc, self.mlp.c_proj = TorchConv1D(cfg.dim, 4 * cfg.dim), TorchConv1D(4 * cfg.dim, cfg.dim)
  def forward(self, x):
    x = x + self.attn(self.ln_1(x))
    return x + self.mlp.c_proj(torch.nn.functional.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh"))

class TorchGPT2(torch.nn.Module):
  """Logits (B, T, vocab) of a whole sequence, no cache; the output is the token embedding's transpose."""
  def __init__(self, cfg: GPT2Config, seed: int):
    super().__init__()
    self.wte, self.wpe = torch.nn.Embedding(cfg.vocab_size, cfg.dim), torch.nn.Embedding(cfg.context_length, cfg.dim)
    self.h = torch.nn.ModuleList(TorchBlock(cfg) for _ in range(cfg.n_layers))
    self.ln_f = torch.nn.LayerNorm(cfg.dim, cfg.norm_eps)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
      for n, p in self.named_parameters():
        r = torch.randn(p.shape, generator=g)
        if n.startswith(("wte", "wpe")): p.copy_(0.1 * r)   # small beside the blocks' outputs, so greedy text does not just repeat
        elif ".ln_" in n or n.startswith("ln_f"): p.copy_((1 if n.endswith("weight") else 0) + 0.1 * r)
        elif n.endswith("bias"): p.copy_(0.1 * r)
        else: p.copy_(r / math.sqrt(p.shape[0]))
  def forward(self, idx):
    x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
    for block in self.h: x = block(x)
    return self.ln_f(x) @ self.wte.weight.T

def checkpoint(tmp_path, cfg: GPT2Config, seed: int, prefix: str = "", dtype=torch.float32, config_json: bool = False):
  """(the path of a safetensors file of a random TorchGPT2's weights in `dtype`, under `prefix` with the mask buffers
  and a tied lm_head.weight as Hugging Face writes them; the float64 torch model of exactly those values)."""
  model = TorchGPT2(cfg, seed)
  sd = {prefix + n: t.to(dtype).contiguous() for n, t in model.state_dict().items()}
  sd["lm_head.weight"] = sd[prefix + "wte.weight"].clone()
  sd[prefix + "h.0.attn.masked_bias"] = torch.tensor(-1e4, dtype=dtype)
  path = tmp_path / "model.safetensors"
  save_file(sd, str(path))
  if config_json:
    (tmp_path / "config.json").write_text(json.dumps({"n_layer": cfg.n_layers, "n_head": cfg.n_heads, "n_embd": cfg.dim, "vocab_size": cfg.vocab_size,
                                                      "n_positions": cfg.context_length, "layer_norm_epsilon": cfg.norm_eps}))
  model.load_state_dict({n: sd[prefix + n].to(t.dtype) for n, t in model.state_dict().items()})   # the values as stored (half: rounded)
  return path, model.double().eval()

def torch_logits(model: TorchGPT2, tokens) -> np.ndarray:
  with torch.no_grad(): return model(torch.tensor(tokens)).numpy()

SMALL = GPT2Config(n_layers=2, n_heads=4, dim=64, vocab_size=100, context_length=32)
TOKENS = [[3, 97, 0, 41, 8, 8, 21, 5, 60, 12, 99], [50, 1, 2, 77, 77, 30, 9, 64, 18, 0, 45]]

@pytest.mark.parametrize("prefix,batch", [("", 1), ("transformer.", 2)])
def test_prefill_then_decode_match_torch(tmp_path, prefix, batch):
  path, ref_model = checkpoint(tmp_path, SMALL, 1, prefix, config_json=True)
  model = GPT2.from_safetensors(path, batch=batch)   # the config from config.json beside the file
  assert model.cfg == SMALL
  tokens = np.array(TOKENS[:batch])
  ref = torch_logits(ref_model, tokens)
  # batch 2 goes in as a transposed view of a (T, B) tensor: the tokens need not be contiguous
  given = Tensor(tokens[:, :5].T.copy()).T if batch == 2 else Tensor(tokens[:, :5])
  got = model(given, 0)
  assert got.dtype == dtypes.float32 and got.shape == (batch, 5, SMALL.vocab_size)
  np.testing.assert_allclose(got.numpy(), ref[:, :5], rtol=1e-4, atol=1e-4)                                       # prefill of 5 positions
  last = model(Tensor(tokens[:, 5:8]), 5, last_only=True)                                                         # 3 more after them
  assert last.shape == (batch, 1, SMALL.vocab_size)
  np.testing.assert_allclose(last.numpy()[:, 0], ref[:, 7], rtol=1e-4, atol=1e-4)
  for p in range(8, 10):                                                                                          # then one at a time
    np.testing.assert_allclose(model(Tensor(tokens[:, p:p + 1]), p).numpy()[:, 0], ref[:, p], rtol=1e-4, atol=1e-4, err_msg=f"position {p}")

@pytest.mark.slow
def test_124m_shapes_with_one_layer(tmp_path):
  cfg = GPT2Config(1, 12, 768, 50257, 1024)
  path, ref_model = checkpoint(tmp_path, cfg, 2, "transformer.")
  model = GPT2.from_safetensors(path, max_context=16)   # no config.json: the shapes give it, with heads of 64
  assert model.cfg == cfg and GPT2Config.gpt2_124m() == GPT2Config(12, 12, 768, 50257, 1024)
  assert model.cache[0][0].shape == (1, 12, 16, 64)
  tokens = [[50256, 464, 2068, 7586, 21831, 11687]]
  ref = torch_logits(ref_model, tokens)
  np.testing.assert_allclose(model(Tensor(tokens[0][:4]).reshape(1, 4), 0).numpy(), ref[:, :4], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(model(Tensor([tokens[0][4:5]]), 4).numpy()[:, 0], ref[:, 4], rtol=1e-4, atol=1e-4)

def torch_greedy(model: TorchGPT2, prompt: list[int], n: int, penalty: float = 1.0) -> list[int]:
  """n tokens chosen greedily after the prompt, each from a full recompute; tokens already in the text get their logit
  divided by `penalty` where positive, multiplied where negative."""
  seq = list(prompt)
  for _ in range(n):
    last = torch_logits(model, [seq])[0, -1]
    seen = np.isin(np.arange(len(last)), seq)
    last = np.where(seen, np.where(last > 0, last / penalty, last * penalty), last)
    top2 = np.sort(last)[-2:]
    assert top2[1] - top2[0] > 1e-4, "a near tie: the reference's choice would not be a fair test"
    seq.append(int(last.argmax()))
  return seq[len(prompt):]

def test_greedy_generation_matches_torch_and_stops(tmp_path):
  path, ref_model = checkpoint(tmp_path, SMALL, 6)
  model = GPT2.from_safetensors(path, SMALL, max_context=14)
  prompt = [7, 70, 17, 2]
  want = torch_greedy(ref_model, prompt, 6)
  assert list(model.generate(prompt, 6)) == want
  assert len(set(want)) >= 3   # not one token repeated
  assert list(model.generate(prompt, 6, stop=(want[3],))) == want[:want.index(want[3]) + 1]
  pen = torch_greedy(ref_model, prompt, 6, penalty=3.0)
  assert pen != want   # the penalty changes the text, so this checks it
  assert list(model.generate(prompt, 6, Sampling(repetition_penalty=3.0))) == pen
  with pytest.raises(ValueError, match="GPT2.generate: 4 prompt tokens and 11 new ones exceed the cache of 14"): next(model.generate(prompt, 11))
  with pytest.raises(ValueError, match="GPT2.generate: the prompt is empty"): next(model.generate([], 1))

def test_bad_checkpoints_and_calls_raise_clear_errors(tmp_path):
  cfg = GPT2Config(n_layers=1, n_heads=2, dim=8, vocab_size=10, context_length=4)
  w = {n: Tensor(t.float().numpy()) for n, t in TorchGPT2(cfg, 4).state_dict().items()}
  model = GPT2(cfg, w)
  with pytest.raises(ValueError, match=r"positions 3\.\.4 are outside the cache of 4"): model(Tensor([[1, 2]]), 3)
  with pytest.raises(ValueError, match=r"positions -1\.\.0 are outside the cache of 4"): model(Tensor([[1, 2]]), -1)
  with pytest.raises(ValueError, match=r"tokens must have shape \(batch=1, T >= 1\), got \(2,\)"): model(Tensor([1, 2]), 0)
  with pytest.raises(ValueError, match=r"tokens must have shape \(batch=1, T >= 1\), got \(1, 0\)"): model(Tensor.zeros(1, 0, dtype=dtypes.int32), 0)
  with pytest.raises(TypeError, match="the indices must be integers, got dtypes.float"): model(Tensor([[1.0, 2.0]]), 0)
  with pytest.raises(ValueError, match=r"lack 1 tensor\(s\), e\.g\. \['h\.0\.mlp\.c_fc\.bias'\]"): GPT2(cfg, {n: t for n, t in w.items() if n != "h.0.mlp.c_fc.bias"})
  with pytest.raises(ValueError, match=r"h\.0\.attn\.c_attn\.weight has shape \(24, 8\), the config needs \(8, 24\)"):
    GPT2(cfg, w | {"h.0.attn.c_attn.weight": w["h.0.attn.c_attn.weight"].T})   # an nn.Linear layout, not Conv1D
  with pytest.raises(ValueError, match=r"1 weight\(s\) the config has no place for, e\.g\. \['h\.1\.ln_1\.weight'\]"): GPT2(cfg, w | {"h.1.ln_1.weight": Tensor.ones(8)})
  with pytest.raises(ValueError, match=r"ln_f\.bias has dtype dtypes\.int32, not a float"): GPT2(cfg, w | {"ln_f.bias": Tensor.zeros(8, dtype=dtypes.int32)})
  with pytest.raises(ValueError, match=r"max_context must be in 1\.\.4 \(the learned positions\), got 5"): GPT2(cfg, w, max_context=5)
  with pytest.raises(ValueError, match="dim 8 is not a multiple of n_heads 3"): GPT2Config(1, 3, 8, 10, 4)
  with pytest.raises(ValueError, match="vocab_size must be a positive int, got 0"): GPT2Config(1, 2, 8, 0, 4)
  with pytest.raises(ValueError, match="the config has no 'n_head'"): GPT2Config.from_hf({"n_layer": 1})
  with pytest.raises(ValueError, match="width 8 is not a multiple of head_dim 64; pass a GPT2Config"): GPT2Config.from_weights(w)
  # a file whose tensor is mis-shaped: the error names it, through from_safetensors
  sd = {n: torch.from_numpy(t.numpy()) for n, t in w.items()} | {"wpe.weight": torch.zeros(4, 6)}
  save_file(sd, str(tmp_path / "bad.safetensors"))
  with pytest.raises(ValueError, match=r"wpe\.weight has shape \(4, 6\), the config needs \(4, 8\)"): GPT2.from_safetensors(tmp_path / "bad.safetensors", cfg)

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_checkpoints_compute_in_float32(tmp_path, dtype):
  cfg = GPT2Config(n_layers=1, n_heads=2, dim=16, vocab_size=20, context_length=8)
  path, ref_model = checkpoint(tmp_path, cfg, 5, dtype=dtype)   # the reference holds the rounded values in float64
  model = GPT2.from_safetensors(path, cfg)
  assert all(t.dtype == dtypes.float32 for t in model.w.values())
  tokens = [[4, 19, 0, 7]]
  np.testing.assert_allclose(model(Tensor(tokens)).numpy(), torch_logits(ref_model, tokens), rtol=1e-4, atol=1e-4)
