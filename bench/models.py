"""The suite's models, in lucidgrad and as torch twins with the same parameter names, so one state dict fits both:
ResNet-18 (He et al. 2015, "Deep Residual Learning", the 18-layer ImageNet net), GPT-2 (Radford et al. 2019, the 124M
configuration: 12 layers, 12 heads, width 768, pre-norm blocks, lm head tied to the token embedding) and the net of
PyTorch's MNIST example (conv 1->32, conv 32->64, max-pool 2, fc 9216->128, fc 128->10; its dropouts left out)."""
from __future__ import annotations
import math
import numpy as np
from lucidgrad import Tensor
from lucidgrad.nn import Module, Sequential, ModuleList, Conv2d, BatchNorm2d, Linear, LayerNorm, Embedding
from lucidgrad.nn.state import get_state_dict

# ---------------------------------------------------------------- ResNet-18

class BasicBlock(Module):
  """Two 3x3 conv-bn pairs and the identity (or a strided 1x1 conv-bn where the shape changes) added before the last relu."""
  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1, self.bn1 = Conv2d(cin, cout, 3, stride, 1, bias=False), BatchNorm2d(cout)
    self.conv2, self.bn2 = Conv2d(cout, cout, 3, 1, 1, bias=False), BatchNorm2d(cout)
    self.downsample = Sequential(Conv2d(cin, cout, 1, stride, bias=False), BatchNorm2d(cout)) if stride != 1 or cin != cout else None
  def forward(self, x: Tensor) -> Tensor:
    out = self.bn2(self.conv2(self.bn1(self.conv1(x)).relu()))
    short = x if self.downsample is None else self.downsample(x)
    return (out + short).relu()

class ResNet18(Module):
  """Logits (B, num_classes); a Module that starts in training mode (batch statistics): eval() for inference."""
  def __init__(self, num_classes: int = 1000):
    super().__init__()
    self.conv1, self.bn1 = Conv2d(3, 64, 7, 2, 3, bias=False), BatchNorm2d(64)
    widths, cin = (64, 128, 256, 512), 64
    for i, w in enumerate(widths):
      setattr(self, f"layer{i + 1}", Sequential(BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w, 1)))
      cin = w
    self.fc = Linear(512, num_classes)
  def forward(self, x: Tensor) -> Tensor:
    x = self.bn1(self.conv1(x)).relu().max_pool2d(3, 2, 1)
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(x.mean((2, 3)))

# ---------------------------------------------------------------- GPT-2

class Attention(Module):
  def __init__(self, dim: int, heads: int):
    super().__init__()
    self.heads, self.c_attn, self.c_proj = heads, Linear(dim, 3 * dim), Linear(dim, dim)
  def forward(self, x: Tensor) -> Tensor:
    B, T, C = x.shape
    q, k, v = [t.reshape(B, T, self.heads, C // self.heads).transpose(1, 2) for t in self.c_attn(x).chunk(3, dim=-1)]
    return self.c_proj(q.scaled_dot_product_attention(k, v, is_causal=True).transpose(1, 2).reshape(B, T, C))

class MLP(Module):
  def __init__(self, dim: int):
    super().__init__()
    self.c_fc, self.c_proj = Linear(dim, 4 * dim), Linear(4 * dim, dim)
  def forward(self, x: Tensor) -> Tensor: return self.c_proj(self.c_fc(x).gelu(approximate="tanh"))

class Block(Module):
  def __init__(self, dim: int, heads: int):
    super().__init__()
    self.ln_1, self.attn, self.ln_2, self.mlp = LayerNorm(dim), Attention(dim, heads), LayerNorm(dim), MLP(dim)
  def forward(self, x: Tensor) -> Tensor:
    x = x + self.attn(self.ln_1(x))
    return x + self.mlp(self.ln_2(x))

GPT2_124M = dict(layers=12, heads=12, dim=768, vocab=50257, ctx=1024)

class GPT2(Module):
  """Logits (B, T, vocab) of tokens (B, T). The embeddings start N(0, 0.02) as GPT-2's; the Linears keep torch's init."""
  def __init__(self, layers: int, heads: int, dim: int, vocab: int, ctx: int):
    super().__init__()
    self.wte = Embedding(vocab, dim, _weight=Tensor.normal(vocab, dim, std=0.02))
    self.wpe = Embedding(ctx, dim, _weight=Tensor.normal(ctx, dim, std=0.02))
    self.h = ModuleList(Block(dim, heads) for _ in range(layers))
    self.ln_f = LayerNorm(dim)
  def forward(self, tokens: Tensor) -> Tensor:
    x = self.wte(tokens) + self.wpe(Tensor.arange(tokens.shape[1]).reshape(1, -1))
    for block in self.h: x = block(x)
    return self.ln_f(x) @ self.wte.weight.T

# ---------------------------------------------------------------- PyTorch's MNIST example net

class MnistExampleNet(Module):
  """Logits (B, 10) of images (B, 1, 28, 28); the example's log_softmax + nll_loss is cross_entropy on these."""
  def __init__(self):
    super().__init__()
    self.conv1, self.conv2 = Conv2d(1, 32, 3, 1), Conv2d(32, 64, 3, 1)
    self.fc1, self.fc2 = Linear(9216, 128), Linear(128, 10)
  def forward(self, x: Tensor) -> Tensor:
    x = self.conv2(self.conv1(x).relu()).relu().max_pool2d(2)
    return self.fc2(self.fc1(x.flatten(1)).relu())

# ---------------------------------------------------------------- torch twins

def torch_twin(name: str, **cfg):
  """The torch module of the same architecture and parameter names (torch imported here: lucidgrad rows run without it)."""
  import torch
  nn, F = torch.nn, torch.nn.functional

  class TBasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
      self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
      self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else None
    def forward(self, x):
      out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
      return F.relu(out + (x if self.downsample is None else self.downsample(x)))

  class TResNet18(nn.Module):
    def __init__(self, num_classes=1000):
      super().__init__()
      self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
      cin = 64
      for i, w in enumerate((64, 128, 256, 512)):
        setattr(self, f"layer{i + 1}", nn.Sequential(TBasicBlock(cin, w, 1 if i == 0 else 2), TBasicBlock(w, w, 1)))
        cin = w
      self.fc = nn.Linear(512, num_classes)
    def forward(self, x):
      x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
      x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
      return self.fc(x.mean((2, 3)))

  class TAttention(nn.Module):
    def __init__(self, dim, heads):
      super().__init__()
      self.heads, self.c_attn, self.c_proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
    def forward(self, x):
      B, T, C = x.shape
      q, k, v = [t.reshape(B, T, self.heads, C // self.heads).transpose(1, 2) for t in self.c_attn(x).chunk(3, dim=-1)]
      return self.c_proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C))

  class TMLP(nn.Module):
    def __init__(self, dim):
      super().__init__()
      self.c_fc, self.c_proj = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
    def forward(self, x): return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))

  class TBlock(nn.Module):
    def __init__(self, dim, heads):
      super().__init__()
      self.ln_1, self.attn, self.ln_2, self.mlp = nn.LayerNorm(dim), TAttention(dim, heads), nn.LayerNorm(dim), TMLP(dim)
    def forward(self, x):
      x = x + self.attn(self.ln_1(x))
      return x + self.mlp(self.ln_2(x))

  class TGPT2(nn.Module):
    def __init__(self, layers, heads, dim, vocab, ctx):
      super().__init__()
      self.wte, self.wpe = nn.Embedding(vocab, dim), nn.Embedding(ctx, dim)
      self.h = nn.ModuleList(TBlock(dim, heads) for _ in range(layers))
      self.ln_f = nn.LayerNorm(dim)
    def forward(self, tokens):
      x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1]).reshape(1, -1))
      for block in self.h: x = block(x)
      return self.ln_f(x) @ self.wte.weight.T

  class TMnistExampleNet(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
      self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)
    def forward(self, x):
      x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
      return self.fc2(F.relu(self.fc1(x.flatten(1))))

  return {"resnet18": TResNet18, "gpt2": TGPT2, "mnist_example": TMnistExampleNet}[name](**cfg)

def copy_to_torch(model, tmodel):
  """Load lucidgrad model's tensors into tmodel by name; every name of either side must be matched."""
  import torch
  sd = {k: torch.from_numpy(np.ascontiguousarray(v.numpy())) for k, v in get_state_dict(model).items()}
  tmodel.load_state_dict(sd, strict=True)
  return tmodel

def assert_close(what: str, ours: np.ndarray, ref: np.ndarray, rtol: float = 1e-3) -> str:
  """Raise AssertionError unless ours agrees with ref within rtol (relative to ref's largest value, so values near zero
  are held to the same absolute error as the rest); return the line the suite prints."""
  scale = float(np.abs(ref).max()) or 1.0
  err = float(np.abs(ours.astype(np.float64) - ref).max()) / scale
  if ours.shape != ref.shape or not math.isfinite(err) or err > rtol:
    raise AssertionError(f"{what}: lucidgrad disagrees with the reference: shapes {ours.shape} / {ref.shape}, max error {err:.3g} of max |ref| {scale:.3g} (rtol {rtol})")
  return f"  agree: {what} (max error {err:.1e} of max |ref|, rtol {rtol})"
