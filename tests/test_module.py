"""nn.Module held to torch.nn.Module: the same model code run with `nn` = torch.nn and `nn` = lucidgrad.nn gives the
same parameter, buffer, module and state-dict names in the same order, the same repr string, and (torch's state dict
loaded into ours) the same outputs in train and eval mode; registration, the walks, train/eval, zero_grad, apply, to(),
requires_grad_, load_state_dict's errors, the containers, and every layer's repr."""
from collections import OrderedDict
import numpy as np
import pytest
import torch
from lucidgrad import Tensor, Device, dtypes, nn
from lucidgrad.nn import init
from lucidgrad.nn.optim import SGD
from lucidgrad.nn.state import get_parameters, get_state_dict
from conftest import rnd

# the reprs follow torch 2.13 (the test extras' pin); an older torch (the GPU machine's 2.11) prints BatchNorm without
# the `bias` argument 2.13 added, so the string comparisons need 2.13
needs_torch_213 = pytest.mark.skipif(tuple(int(x) for x in torch.__version__.split(".")[:2]) < (2, 13), reason="reprs follow torch 2.13")


@pytest.fixture(autouse=True)
def seeded():
  Tensor.manual_seed(0)
  torch.manual_seed(0)

# ---------------------------------------------------------------- three models, written once for either library

def mlp(nn):
  return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8, bias=False), nn.GELU(approximate="tanh"), nn.Linear(8, 3))

def cnn(nn, p=0.25):
  F = nn.functional
  class Net(nn.Module):
    """PyTorch's MNIST example net, small: conv, BatchNorm, pool, dropout, fc."""
    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(2, 4, 3, 1)
      self.bn1 = nn.BatchNorm2d(4)
      self.conv2 = nn.Conv2d(4, 6, 3, 1, padding=1)
      self.dropout1 = nn.Dropout(p)
      self.fc1 = nn.Linear(6 * 3 * 3, 5)
    def forward(self, x):
      x = F.relu(self.bn1(self.conv1(x)))
      x = F.max_pool2d(F.relu(self.conv2(x)), 2)
      x = self.dropout1(torch.flatten(x, 1) if isinstance(x, torch.Tensor) else x.flatten(1))
      return F.log_softmax(self.fc1(x), dim=1)
  return Net()

def nested(nn):
  class Block(nn.Module):
    def __init__(self, d):
      super().__init__()
      self.norm = nn.LayerNorm(d)
      self.ff = nn.Sequential(OrderedDict([("up", nn.Linear(d, 2 * d)), ("act", nn.SiLU()), ("down", nn.Linear(2 * d, d))]))
    def forward(self, x): return x + self.ff(self.norm(x))
  class Model(nn.Module):
    def __init__(self):
      super().__init__()
      self.emb = nn.Embedding(7, 4)
      self.blocks = nn.ModuleList([Block(4) for _ in range(2)])
      self.heads = nn.ModuleDict({"cls": nn.Linear(4, 3), "reg": nn.Sequential(nn.Linear(4, 1), nn.Tanh())})
      self.bn = nn.BatchNorm1d(4)
      self.register_buffer("scale", torch.full((4,), 0.5) if nn is torch.nn else Tensor.full((4,), 0.5).contiguous().realize())
      self.register_buffer("scratch", torch.zeros(2) if nn is torch.nn else Tensor.zeros(2).contiguous().realize(), persistent=False)
    def forward(self, tok):
      x = self.emb(tok)
      for b in self.blocks: x = b(x)
      x = self.bn(x.mean(1) * self.scale)
      return self.heads["cls"](x), self.heads["reg"](x)
  return Model()

MODELS = {"mlp": (mlp, lambda: [rnd(1, 5, 6)]), "cnn": (cnn, lambda: [rnd(2, 3, 2, 8, 8)]),
          "nested": (nested, lambda: [np.random.default_rng(3).integers(0, 7, (4, 5)).astype(np.int64)])}

def twins(name):
  make, inputs = MODELS[name]
  th, lg = make(torch.nn), make(nn)
  return th, lg, inputs()

def outputs(out) -> list:
  return list(out) if isinstance(out, tuple) else [out]

@pytest.mark.parametrize("name", list(MODELS))
def test_names_and_order_are_torchs(name):
  th, lg, _ = twins(name)
  assert [k for k, _ in lg.named_parameters()] == [k for k, _ in th.named_parameters()]
  assert [k for k, _ in lg.named_buffers()] == [k for k, _ in th.named_buffers()]
  assert [k for k, _ in lg.named_modules()] == [k for k, _ in th.named_modules()]
  assert [k for k, _ in lg.named_children()] == [k for k, _ in th.named_children()]
  assert list(lg.state_dict()) == list(th.state_dict())
  assert list(get_state_dict(lg)) == list(th.state_dict())  # nn.state's walk gives a Module's own keys
  for (k, p), (_, tp) in zip(lg.named_parameters(), th.named_parameters()): assert p.shape == tuple(tp.shape), k
  assert [id(p) for p in lg.parameters()] == [id(p) for p in get_parameters(lg)]
  assert len(list(lg.modules())) == len(list(th.modules())) and len(list(lg.children())) == len(list(th.children()))

@needs_torch_213
@pytest.mark.parametrize("name", list(MODELS))
def test_repr_is_torchs_string(name):
  th, lg, _ = twins(name)
  assert repr(lg) == repr(th)

@pytest.mark.parametrize("name", list(MODELS))
def test_torch_state_dict_loads_and_outputs_match_in_eval_and_train(name):
  make, inputs = MODELS[name]
  th, lg = (make(torch.nn, p=0.0), make(nn, p=0.0)) if name == "cnn" else (make(torch.nn), make(nn))  # train mode: no random mask
  xs = inputs()
  if any(isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d) for m in th.modules()):
    with torch.no_grad(): th(*[torch.tensor(x) for x in xs])  # running stats that are not the defaults
  result = lg.load_state_dict(th.state_dict())  # torch tensors as they are
  assert result == ([], []) and result.missing_keys == [] and repr(result) == "<All keys matched successfully>"
  for k, v in th.state_dict().items(): np.testing.assert_array_equal(lg.state_dict()[k].numpy(), v.numpy(), err_msg=k)
  for mode in (False, True):
    th.train(mode); lg.train(mode)
    assert all(m.training is mode for m in lg.modules())
    want, got = outputs(th(*[torch.tensor(x) for x in xs])), outputs(lg(*[Tensor(x) for x in xs]))
    cotangents = [rnd(60 + i, *w.shape) for i, w in enumerate(want)]
    sum((w * torch.tensor(c)).sum() for w, c in zip(want, cotangents)).backward()
    sum((g * Tensor(c)).sum() for g, c in zip(got, cotangents)).backward()
    Tensor.realize(*got, *lg.buffers(), *[p.grad for p in lg.parameters()])
    for g, w in zip(got, want): np.testing.assert_allclose(g.numpy(), w.detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=f"train={mode}")
    for (k, p), tp in zip(lg.named_parameters(), th.parameters()):
      np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=f"gradient of {k}, train={mode}")
    th.zero_grad(); lg.zero_grad()
  for k, v in th.state_dict().items():  # the train step moved the running stats the same way
    np.testing.assert_allclose(lg.state_dict()[k].numpy(), v.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)

@pytest.mark.slow
def test_a_jitted_training_step_on_a_module():
  from lucidgrad import jit
  th, lg, (x,) = twins("cnn")
  lg.load_state_dict(th.state_dict())
  lg.dropout1.p = th.dropout1.p = 0.0
  y = np.array([0, 3, 1])
  opt, topt = SGD(list(lg.parameters()), lr=0.1), torch.optim.SGD(th.parameters(), lr=0.1)
  @jit
  def step(x: Tensor, y: Tensor) -> Tensor:
    opt.zero_grad()
    loss = nn.functional.nll_loss(lg(x), y)
    loss.backward(); opt.step()
    return loss.realize(*lg.buffers())
  for _ in range(3):
    loss = step(Tensor(x), Tensor(y))
    topt.zero_grad(); tl = torch.nn.functional.nll_loss(th(torch.tensor(x)), torch.tensor(y)); tl.backward(); topt.step()
    np.testing.assert_allclose(loss.item(), tl.item(), rtol=1e-4)
  for k, v in th.state_dict().items(): np.testing.assert_allclose(lg.state_dict()[k].numpy(), v.detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=k)

# ---------------------------------------------------------------- registration

def test_assignment_registers_parameters_buffers_and_modules_like_torch():
  m = nn.Module()
  m.w = Tensor(rnd(4, 3), requires_grad=True)             # a leaf that requires grad: a parameter
  m.frozen = nn.Parameter(Tensor(rnd(5, 2)), requires_grad=False)
  m.plain = Tensor(rnd(6, 2))                              # neither: a plain attribute, as torch
  m.sub = nn.Linear(2, 2)
  m.register_buffer("stat", Tensor.zeros(2).contiguous().realize())
  m.register_buffer("tmp", Tensor.zeros(1).contiguous().realize(), persistent=False)
  m.register_parameter("absent", None)
  assert [k for k, _ in m.named_parameters()] == ["w", "frozen", "sub.weight", "sub.bias"]
  assert list(m.state_dict()) == ["w", "frozen", "stat", "sub.weight", "sub.bias"]  # no tmp (not persistent), no None
  assert [k for k, _ in m.named_buffers()] == ["stat", "tmp"]
  assert isinstance(m.frozen, nn.Parameter) and not m.frozen.requires_grad and isinstance(m.sub.weight, nn.Parameter)
  assert not isinstance(m.plain, nn.Parameter) and "plain" in vars(m) and m.absent is None
  np.testing.assert_array_equal(m.frozen.numpy(), rnd(5, 2))
  m.absent = Tensor.ones(2)  # any tensor into a registered parameter slot
  assert "absent" in dict(m.named_parameters())
  m.sub = None  # None keeps the slot
  assert "sub" in m._modules and m.sub is None and not any(k.startswith("sub.") for k in m.state_dict())
  del m.w
  assert not hasattr(m, "w") and "w" not in dict(m.named_parameters())
  assert {"frozen", "stat", "absent", "sub", "train", "forward"} <= set(dir(m))

def test_registration_errors_name_the_attribute():
  m = nn.Linear(2, 2)
  with pytest.raises(TypeError, match=r"cannot assign a int as parameter 'weight' of Linear"): m.weight = 3
  with pytest.raises(KeyError, match=r"attribute 'in_features' already exists"): m.register_buffer("in_features", Tensor.zeros(1))
  with pytest.raises(KeyError, match=r"parameter name can.*t be empty or contain"): m.register_parameter("a.b", None)
  with pytest.raises(TypeError, match=r"cannot register a list as buffer 'b'"): m.register_buffer("b", [1])
  with pytest.raises(TypeError, match=r"int is not a Module subclass"): m.add_module("c", 3)
  with pytest.raises(AttributeError, match=r"'Linear' object has no attribute 'wieght'"): _ = m.wieght
  s = nn.Sequential(nn.Linear(2, 2))
  with pytest.raises(TypeError, match=r"cannot assign a Tensor as child module '0'"): setattr(s, "0", Tensor.zeros(2))
  with pytest.raises(AttributeError, match=r"Sequential has no submodule '5'"): s.get_submodule("5.weight")
  with pytest.raises(NotImplementedError, match=r'Module \[Module\] is missing the required "forward"'): nn.Module()(Tensor.zeros(1))

def test_tied_weights_are_one_parameter_and_two_state_dict_keys_as_in_torch():
  def tied(nn):
    m = nn.Module()
    m.emb, m.head = nn.Embedding(5, 3), nn.Linear(3, 5, bias=False)
    m.head.weight = m.emb.weight
    return m
  th, lg = tied(torch.nn), tied(nn)
  assert [k for k, _ in lg.named_parameters()] == [k for k, _ in th.named_parameters()] == ["emb.weight"]
  assert list(lg.state_dict()) == list(th.state_dict()) == ["emb.weight", "head.weight"]
  assert [k for k, _ in lg.named_parameters(remove_duplicate=False)] == [k for k, _ in th.named_parameters(remove_duplicate=False)]

def test_a_layer_subclass_that_skips_super_init_still_registers():
  class Old(nn.Layer):  # code written before Module: subclasses Layer, never calls super().__init__(), defines __call__
    def __init__(self): self.fc, self.scale = nn.Linear(2, 3), 2.0
    def __call__(self, x): return self.fc(x) * self.scale
  m = Old()
  assert nn.Layer is nn.Module and [k for k, _ in m.named_parameters()] == ["fc.weight", "fc.bias"] and m.training
  np.testing.assert_allclose(m(Tensor(rnd(7, 1, 2))).numpy(), (rnd(7, 1, 2) @ m.fc.weight.numpy().T + m.fc.bias.numpy()) * 2, rtol=1e-6)
  assert m.eval() is m and not m.fc.training

def test_layers_in_a_plain_list_are_walked_by_get_state_dict_but_not_by_the_module():
  class M(nn.Module):
    def __init__(self):
      super().__init__()
      self.head = nn.Linear(2, 2)
      self.extra = [nn.Linear(2, 2)]  # not registered, as in torch
  m = M()
  assert list(m.state_dict()) == ["head.weight", "head.bias"]
  assert list(get_state_dict(m)) == ["head.weight", "head.bias", "extra.0.weight", "extra.0.bias"]
  assert len(get_parameters(m)) == 4 and len(list(m.parameters())) == 2

def test_get_submodule_parameter_and_buffer():
  _, lg, _ = twins("nested")
  assert lg.get_submodule("blocks.1.ff.up") is lg.blocks[1].ff.up and lg.get_submodule("") is lg
  assert lg.get_parameter("heads.cls.bias") is lg.heads["cls"].bias and lg.get_buffer("bn.running_mean") is lg.bn.running_mean
  with pytest.raises(AttributeError, match="'heads.cls.nope' is not a parameter"): lg.get_parameter("heads.cls.nope")

# ---------------------------------------------------------------- mode, gradients, apply, to, requires_grad_

def test_train_and_eval_set_every_flag_and_return_the_module():
  th, lg, _ = twins("nested")
  assert lg.training and all(m.training for m in lg.modules())  # torch's modules start in training mode
  assert lg.eval() is lg and not any(m.training for m in lg.modules())
  lg.blocks.train()
  assert [m.training for m in lg.modules()] == [m.training for m in th.eval().blocks.train() and th.modules()]
  with pytest.raises(ValueError, match="mode is expected to be a bool"): lg.train("yes")

def test_zero_grad_forgets_or_zeroes_every_gradient():
  lg = mlp(nn)
  lg(Tensor(rnd(8, 2, 6))).sum().backward()
  assert all(p.grad is not None for p in lg.parameters())
  lg.zero_grad(set_to_none=False)
  assert all(p.grad is not None and not np.any(p.grad.numpy()) and p.grad.shape == p.shape for p in lg.parameters())
  lg.zero_grad()
  assert all(p.grad is None for p in lg.parameters())

def test_apply_visits_in_torchs_order_and_inits_in_place():
  th, lg, _ = twins("nested")
  seen_t, seen_l = [], []
  th.apply(lambda m: seen_t.append(type(m).__name__)); lg.apply(lambda m: seen_l.append(type(m).__name__))
  assert seen_l == seen_t
  opt = SGD(list(lg.parameters()), lr=0.1)
  weights = [m.weight for m in lg.modules() if isinstance(m, nn.Linear)]
  assert lg.apply(lambda m: init.constant_(m.weight, 0.5) if isinstance(m, nn.Linear) else None) is lg
  for w in weights: assert w is next(p for p in opt.params if p is w) and np.all(w.numpy() == 0.5)  # the optimiser's tensors

def test_to_dtype_casts_float_tensors_only_and_matches_torch_in_float64():
  th, lg, (x,) = twins("cnn")
  lg.load_state_dict(th.state_dict())
  assert lg.to(dtypes.float64) is lg and lg.double() is lg
  assert all(p.dtype == dtypes.float64 and p.requires_grad and p.is_leaf for p in lg.parameters())
  assert lg.bn1.running_mean.dtype == dtypes.float64 and lg.bn1.num_batches_tracked.dtype == dtypes.int64  # integers stay
  th.double().eval(); lg.eval()
  with torch.no_grad(): want = th(torch.tensor(x, dtype=torch.float64)).numpy()
  out = lg(Tensor(x.astype(np.float64)))
  assert out.dtype == dtypes.float64
  np.testing.assert_allclose(out.numpy(), want, rtol=1e-10, atol=1e-12)
  out.sum().backward()
  assert lg.fc1.weight.grad is not None and lg.fc1.weight.grad.dtype == dtypes.float64
  w = lg.fc1.weight
  assert lg.to(Device.DEFAULT) is lg and lg.fc1.weight is w  # already there: nothing replaced
  with pytest.raises(TypeError, match="only accepts floating point dtypes"): lg.to(dtypes.int32)
  with pytest.raises(TypeError, match="takes a device"): lg.to(3)

def test_to_device_moves_parameters_and_buffers_and_the_outputs_agree():
  m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).eval()
  x = rnd(11, 4, 3)
  want = m(Tensor(x)).numpy()
  assert m.to("PYTHON") is m  # the emulator stands in for another device
  assert all(t.device == "PYTHON" for t in [*m.parameters(), *m.buffers()]) and all(p.requires_grad and p.is_leaf for p in m.parameters())
  np.testing.assert_allclose(m(Tensor(x, device="PYTHON")).numpy(), want, rtol=1e-6)
  assert m.cpu() is m and m[1].running_var.device == "CPU"

def test_to_keeps_tied_weights_tied():
  m = nn.Module()
  m.a, m.b = nn.Linear(2, 2), nn.Linear(2, 2)
  m.b.weight = m.a.weight
  m.half()
  assert m.a.weight is m.b.weight and m.a.weight.dtype == dtypes.float16

def test_requires_grad_false_freezes_every_parameter():
  lg = mlp(nn)
  assert lg.requires_grad_(False) is lg and not any(p.requires_grad for p in lg.parameters())
  assert get_parameters(lg) == [] and len(list(lg.parameters())) == 5
  x = Tensor(rnd(9, 2, 6), requires_grad=True)
  lg(x).sum().backward()
  assert x.grad is not None and all(p.grad is None for p in lg.parameters())
  lg.requires_grad_()
  assert all(p.requires_grad for p in lg.parameters())

# ---------------------------------------------------------------- load_state_dict

def test_load_state_dict_errors_name_every_key_and_write_nothing():
  th, lg = cnn(torch.nn), cnn(nn)
  sd = th.state_dict()
  del sd["bn1.running_var"]
  sd["fc2.weight"] = torch.zeros(2)
  sd["conv2.bias"] = torch.zeros(7)
  before = lg.conv1.weight.numpy()
  with pytest.raises(RuntimeError) as e: lg.load_state_dict(sd)
  msg = str(e.value)
  assert "error(s) loading the state dict into Net" in msg
  assert "missing keys: ['bn1.running_var']" in msg and "unexpected keys: ['fc2.weight']" in msg
  assert "conv2.bias: the model's tensor has shape (6,), the state dict's (7,)" in msg
  np.testing.assert_array_equal(lg.conv1.weight.numpy(), before)
  sd["conv2.bias"] = th.state_dict()["conv2.bias"]
  result = lg.load_state_dict(sd, strict=False)
  assert result.missing_keys == ["bn1.running_var"] and result.unexpected_keys == ["fc2.weight"]
  np.testing.assert_array_equal(lg.conv1.weight.numpy(), th.conv1.weight.detach().numpy())
  with pytest.raises(RuntimeError, match=r"float value into an integer tensor\):\n    bn1.num_batches_tracked: the model's tensor is dtypes.int64"):
    lg.load_state_dict({**th.state_dict(), "bn1.num_batches_tracked": np.float32(2.5)})
  with pytest.raises(TypeError, match=r"state dict entry 'fc1.bias': expected a Tensor, NumPy array or torch tensor, got a str"):
    lg.load_state_dict({**th.state_dict(), "fc1.bias": "x"})

def test_load_state_dict_writes_in_place_from_numpy_and_lucidgrad_values():
  a, b = mlp(nn), mlp(nn)
  opt = SGD(list(b.parameters()), lr=0.1)
  held = list(b.parameters())
  b.load_state_dict({k: v.numpy() for k, v in a.state_dict().items()})
  assert [id(p) for p in b.parameters()] == [id(p) for p in held] == [id(p) for p in opt.params]
  for (k, p), q in zip(b.named_parameters(), a.parameters()): np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=k)
  b.load_state_dict(mlp(nn).state_dict())  # lucidgrad tensors
  assert b[0].weight is held[0]
  th = mlp(torch.nn)
  b.load_state_dict({k: v.bfloat16() for k, v in th.state_dict().items()})  # torch's bfloat16, widened exactly
  np.testing.assert_array_equal(b[0].weight.numpy(), th[0].weight.detach().bfloat16().float().numpy())

def test_state_dict_values_are_detached_views_that_see_updates():
  lg = mlp(nn)
  sd = lg.state_dict()
  assert not sd["0.weight"].requires_grad and lg.state_dict(keep_vars=True)["0.weight"] is lg[0].weight
  lg[0].weight.assign(lg[0].weight * 0).realize()
  assert not np.any(sd["0.weight"].numpy())
  assert list(lg.state_dict(prefix="model.")) == ["model." + k for k in sd]

# ---------------------------------------------------------------- containers

def test_sequential_indexing_slicing_and_editing_as_torch():
  th, lg = [nn_.Sequential(nn_.Linear(2, 3), nn_.ReLU(), nn_.Linear(3, 2), nn_.Tanh()) for nn_ in (torch.nn, nn)]
  assert len(lg) == 4 and lg[-1] is list(lg)[3] and repr(lg[1:3]) == repr(th[1:3]) and list(lg[1:3]._modules) == ["1", "2"]
  for s, nn_ in ((th, torch.nn), (lg, nn)):
    del s[1]
    s.append(nn_.Linear(2, 2)).insert(1, nn_.SiLU())
  assert repr(lg) == repr(th) and list(lg._modules) == list(th._modules)
  assert type(lg.pop(0)) is nn.Linear and len(lg) == 4
  with pytest.raises(IndexError, match="index 9 is out of range for a Sequential of length 4"): lg[9]
  od = nn.Sequential(OrderedDict([("a", nn.Linear(2, 2)), ("b", nn.ReLU())]))
  x = Tensor(rnd(10, 3, 2))
  np.testing.assert_allclose(od(x).numpy(), np.maximum(od.a(x).numpy(), 0), rtol=1e-6)
  assert list(od.state_dict()) == ["a.weight", "a.bias"]

def test_modulelist_and_moduledict_as_torch():
  th = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.ReLU()])
  lg = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2), nn.ReLU()])
  assert repr(lg) == repr(th)  # torch's "(0-1): 2 x Linear(...)" lines for equal neighbours
  for m, nn_ in ((th, torch.nn), (lg, nn)):
    m += [nn_.Linear(2, 2)]
    m.insert(0, nn_.Tanh())
    m.extend([nn_.ReLU(), nn_.ReLU()])
    del m[1]
  assert repr(lg) == repr(th) and repr(lg[1:3]) == repr(th[1:3]) and len(lg) == len(th) == 6
  assert [k for k, _ in lg.named_parameters()] == [k for k, _ in th.named_parameters()]
  thd = torch.nn.ModuleDict({"b": torch.nn.ReLU(), "a": torch.nn.Linear(2, 2)})
  lgd = nn.ModuleDict({"b": nn.ReLU(), "a": nn.Linear(2, 2)})
  thd.update([("c", torch.nn.Tanh())]); lgd.update([("c", nn.Tanh())])
  assert repr(lgd) == repr(thd) and list(lgd) == list(thd) == list(lgd.keys()) and "a" in lgd and "z" not in lgd
  assert type(lgd.pop("b")) is nn.ReLU and list(lgd) == ["a", "c"] and [k for k, _ in lgd.items()] == ["a", "c"]

def test_parameter_list_and_dict_register_parameters():
  thl = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(2, 3)), torch.nn.Parameter(torch.zeros(3))])
  lgl = nn.ParameterList([Tensor.zeros(2, 3), nn.Parameter(Tensor.zeros(3))])
  assert [k for k, _ in lgl.named_parameters()] == [k for k, _ in thl.named_parameters()] and len(lgl) == 2
  assert all(p.requires_grad and p.is_leaf for p in lgl) and lgl[1].shape == (3,)
  where = "" if Device.DEFAULT == "CPU" else f" ({Device.DEFAULT})"  # torch too names a parameter's device unless the CPU
  assert repr(lgl).splitlines()[1] == f"    (0): Parameter containing: [dtypes.float32 of size 2x3{where}]"
  d = nn.ParameterDict({"w": Tensor.ones(2)})
  d["v"] = Tensor.zeros(1)
  assert list(d.state_dict()) == ["w", "v"] and list(d) == ["w", "v"] and "v" in d

# ---------------------------------------------------------------- every layer's repr

REPRS = ["Linear(3, 4)", "Linear(3, 4, bias=False)", "Conv1d(2, 4, 3, stride=2, padding=1, dilation=2, groups=2)", "Conv2d(1, 32, 3)",
         "Conv2d(2, 4, 3, padding='same', bias=False, padding_mode='reflect')", "Conv2d(2, 4, (3, 1), padding='valid')",
         "Conv3d(2, 2, 1)", "ConvTranspose1d(2, 2, 3)", "ConvTranspose2d(2, 4, 3, stride=2, output_padding=1)", "ConvTranspose3d(1, 1, 1)",
         "BatchNorm1d(4, momentum=None, affine=False)", "BatchNorm2d(3, bias=False)", "BatchNorm3d(2, track_running_stats=False)",
         "InstanceNorm1d(3)", "InstanceNorm2d(3, affine=True, track_running_stats=True)", "InstanceNorm3d(2)", "LayerNorm(3)",
         "LayerNorm((3, 4), elementwise_affine=False)", "GroupNorm(2, 4)", "GroupNorm(2, 4, affine=False)", "RMSNorm(3)", "RMSNorm([3], eps=1e-5)",
         "Embedding(5, 3)", "Embedding(5, 3, padding_idx=-1, max_norm=2, norm_type=1.0, scale_grad_by_freq=True, sparse=True)",
         "Dropout()", "Dropout(0.2, True)", "LSTMCell(3, 4)", "LSTMCell(3, 4, bias=False)", "MultiheadAttention(8, 2)",
         "MultiheadAttention(8, 2, kdim=4, vdim=4, add_bias_kv=True, bias=False)",
         "ReLU()", "ReLU(inplace=True)", "ReLU6(True)", "LeakyReLU()", "LeakyReLU(0.2, True)", "ELU()", "ELU(0.5, True)", "SELU()", "CELU(2.0)",
         "GELU()", "GELU('tanh')", "SiLU()", "Mish()", "Softplus()", "Softplus(2, 10)", "Softsign()", "Hardtanh()", "Hardtanh(0, 6, True)",
         "Hardswish()", "Hardsigmoid()", "Tanh()", "Sigmoid()", "LogSigmoid()", "Softmax(1)", "Softmax()", "LogSoftmax(dim=1)", "Softmin(-1)",
         "Softmax2d()", "Threshold(0.1, 20)", "Tanhshrink()", "Softshrink(0.3)", "Hardshrink()", "GLU()", "PReLU()", "PReLU(3, 0.1)",
         "Dropout1d()", "Dropout2d(0.2)", "Dropout3d()", "AlphaDropout()", "FeatureAlphaDropout(0.1)", "Flatten()", "Flatten(0, 2)",
         "Unflatten(1, (2, 5))", "Identity(54, unused='x')", "PixelShuffle(2)", "PixelUnshuffle(3)", "CosineSimilarity()", "PairwiseDistance()",
         "MaxPool1d(3, 1, 1, 2, True, True)", "MaxPool2d(2)", "MaxPool2d((2, 3), 1, 1, ceil_mode=True)", "MaxPool3d(2)", "AvgPool1d(2)",
         "AvgPool1d(3, 1, 1, ceil_mode=True)", "AvgPool2d(2)", "AvgPool2d(3, 1, 1, True, False, 2)", "AvgPool3d(2)", "AdaptiveAvgPool1d(3)",
         "AdaptiveAvgPool2d((1, 1))", "AdaptiveAvgPool2d(1)", "AdaptiveAvgPool3d((1, None, 2))", "Upsample(scale_factor=2)",
         "Upsample(scale_factor=(2, 3))", "Upsample(size=4, mode='bilinear', align_corners=True)", "UpsamplingNearest2d(scale_factor=2)",
         "UpsamplingBilinear2d(size=(4, 5))", "ZeroPad1d(1)", "ZeroPad2d((1, 2, 3, 4))", "ZeroPad3d(1)", "ConstantPad1d(2, 0.)",
         "ConstantPad2d(1, 3.5)", "ConstantPad3d((1, 2, 3, 4, 5, 6), 1)", "ReflectionPad1d(2)", "ReflectionPad2d(1)", "ReplicationPad3d(1)",
         "CircularPad2d(1)", "CrossEntropyLoss(label_smoothing=0.1)", "NLLLoss()", "MSELoss()", "L1Loss()", "HuberLoss()", "SmoothL1Loss()",
         "BCELoss()", "BCEWithLogitsLoss()", "KLDivLoss()"]

@needs_torch_213
def test_every_layers_repr_and_parameter_and_buffer_names_are_torchs():
  for spec in REPRS:
    th, lg = eval("torch.nn." + spec), eval("nn." + spec)
    assert repr(lg) == repr(th), spec
    assert list(lg.state_dict()) == list(th.state_dict()), spec
    assert [k for k, _ in lg.named_parameters()] == [k for k, _ in th.named_parameters()], spec
    for k, v in th.state_dict().items(): assert lg.state_dict()[k].shape == tuple(v.shape), (spec, k)
