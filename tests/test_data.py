"""lucidgrad.utils.data held to torch.utils.data on the CPU wherever the result is deterministic (batch contents, order,
types and dtypes without shuffling, lengths, samplers, default_collate), and to the properties torch promises where it
is random (each epoch a permutation, a new one each epoch, the same under the same seed); the TensorDataset fast path
against the per-item path, its one gather kernel per tensor, its kernels compiled once; the background threads (they
end, run ahead on the dataset, re-raise errors with their own type); and the errors for bad arguments."""
import collections, threading, warnings
import numpy as np
import pytest
import torch
import torch.utils.data as tud
from lucidgrad import Tensor, dtypes, GlobalCounters
from lucidgrad.utils.data import (DataLoader, TensorDataset, Dataset, IterableDataset, Subset, ConcatDataset, ChainDataset, random_split,
                                  Generator, SequentialSampler, RandomSampler, SubsetRandomSampler, WeightedRandomSampler, BatchSampler,
                                  default_collate, default_convert, get_worker_info)
import lucidgrad.utils.data as lud

N = 10  # every table has 10 rows and every lucidgrad batch 4 (then 2) rows, so the gather kernels are compiled once
X = np.arange(N * 3, dtype=np.float32).reshape(N, 3) * 0.5 - 4
Y = (np.arange(N) * 7 % 5).astype(np.int64)

def assert_same(ours, theirs, where="batch"):
  """ours (lucidgrad Tensors in containers) equals theirs (torch tensors in the same containers): types, keys, shapes,
  dtypes and values."""
  if isinstance(theirs, torch.Tensor):
    assert isinstance(ours, Tensor), f"{where}: {type(ours).__name__}, torch gives a Tensor"
    a, b = ours.numpy(), theirs.numpy()
    assert a.shape == b.shape and a.dtype == b.dtype, f"{where}: {a.shape} {a.dtype}, torch gives {b.shape} {b.dtype}"
    np.testing.assert_array_equal(a, b, err_msg=where)
  elif isinstance(theirs, dict):
    assert type(ours) is type(theirs) and list(ours) == list(theirs), f"{where}: {ours!r} vs {theirs!r}"
    for k in theirs: assert_same(ours[k], theirs[k], f"{where}[{k!r}]")
  elif isinstance(theirs, (list, tuple)):
    assert type(ours) is type(theirs) and len(ours) == len(theirs), f"{where}: {type(ours).__name__} of {len(ours)}, torch {type(theirs).__name__} of {len(theirs)}"
    for i, (a, b) in enumerate(zip(ours, theirs)): assert_same(a, b, f"{where}[{i}]")
  else: assert type(ours) is type(theirs) and ours == theirs, f"{where}: {ours!r} vs {theirs!r}"

def as_np(batch):
  return [t.numpy() for t in batch]

def data_threads():
  return [t for t in threading.enumerate() if t.name.startswith("lucidgrad-data")]

Point = collections.namedtuple("Point", "x y")

class Samples:
  """A map-style dataset (no base class: torch takes any object with __getitem__ and __len__) of nested samples."""
  def __init__(self, n=7): self.n = n
  def __len__(self): return self.n
  def __getitem__(self, i):
    rng = np.random.default_rng(i)
    return {"image": rng.standard_normal((2, 3)).astype(np.float32), "label": i % 3, "weight": i / 4, "name": f"item{i}",
            "pair": (np.int16(i), np.float64(-i)), "point": Point(np.array([i, i + 1], np.uint8), True), "tags": [i, 2 * i]}

# ---------------------------------------------------------------- batches and lengths against torch
@pytest.mark.parametrize("batch_size,drop_last", [(4, False), (4, True), (5, False), (None, False)])
def test_map_style_batches_match_torch(batch_size, drop_last):
  ds = Samples()
  ours, theirs = DataLoader(ds, batch_size=batch_size, drop_last=drop_last), tud.DataLoader(ds, batch_size=batch_size, drop_last=drop_last)
  assert len(ours) == len(theirs)
  got, want = list(ours), list(theirs)
  assert len(got) == len(want) == len(theirs)
  for i, (a, b) in enumerate(zip(got, want)): assert_same(a, b, f"batch {i}")

@pytest.mark.parametrize("batch_size,drop_last", [(4, False), (4, True), (None, False)])
def test_numpy_tensor_dataset_batches_match_torch(batch_size, drop_last):
  kw = dict(batch_size=batch_size, drop_last=drop_last)
  ours, theirs = DataLoader(TensorDataset(X, Y), **kw), tud.DataLoader(tud.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)), **kw)
  assert len(ours) == len(theirs)
  got, want = list(ours), list(theirs)
  assert len(got) == len(want)
  for i, (a, b) in enumerate(zip(got, want)): assert_same(a, b, f"batch {i}")

@pytest.mark.parametrize("drop_last", [False, True])
def test_lucidgrad_tensor_dataset_batches_match_torch(drop_last):
  xt = Tensor(np.ascontiguousarray(X.T)).T  # a transposed view: the gather reads through it
  ours = DataLoader(TensorDataset(xt, Tensor(Y)), batch_size=4, drop_last=drop_last)
  theirs = tud.DataLoader(tud.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)), batch_size=4, drop_last=drop_last)
  got, want = list(ours), list(theirs)
  assert len(ours) == len(theirs) == len(got) == len(want)
  for i, (a, b) in enumerate(zip(got, want)): assert_same(a, b, f"batch {i}")

def test_custom_samplers_and_batch_sampler_match_torch():
  ds_ours, ds_theirs = TensorDataset(X, Y), tud.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y))
  order = [3, 3, 9, 0, -1, 5]  # repeats and a negative index, as a plain list sampler
  for kw in (dict(sampler=order, batch_size=4), dict(batch_sampler=[[1, 2, 3], [9], [0, 0], [4, 5, 6, 7, 8]]), dict(sampler=order, batch_size=None)):
    got, want = list(DataLoader(ds_ours, **kw)), list(tud.DataLoader(ds_theirs, **kw))
    assert len(got) == len(want), kw
    for i, (a, b) in enumerate(zip(got, want)): assert_same(a, b, f"{kw} batch {i}")

def test_empty_dataset_gives_no_batches():
  ds = TensorDataset(X[:0], Y[:0])
  assert len(DataLoader(ds, batch_size=4)) == len(tud.DataLoader(tud.TensorDataset(torch.zeros(0, 3)), batch_size=4)) == 0
  assert list(DataLoader(ds, batch_size=4)) == []
  with pytest.raises(ValueError, match="num_samples=0"): DataLoader(ds, batch_size=4, shuffle=True)
  with pytest.raises(ValueError, match="num_samples=0"): tud.DataLoader(tud.TensorDataset(torch.zeros(0, 3)), batch_size=4, shuffle=True)

class Stream(IterableDataset):
  def __init__(self, n, with_len=True): self.n, self.with_len = n, with_len
  def __iter__(self): return ((np.full(2, i, np.int32), i * 0.5) for i in range(self.n))
  def __len__(self):
    if not self.with_len: raise TypeError("no len")
    return self.n

class TorchStream(tud.IterableDataset):
  def __init__(self, n): self.n = n
  def __iter__(self): return ((np.full(2, i, np.int32), i * 0.5) for i in range(self.n))
  def __len__(self): return self.n

@pytest.mark.parametrize("batch_size,drop_last,workers", [(3, False, 0), (3, True, 2), (None, False, 1)])
def test_iterable_dataset_batches_match_torch(batch_size, drop_last, workers):
  ours = DataLoader(Stream(8), batch_size=batch_size, drop_last=drop_last, num_workers=workers)
  theirs = tud.DataLoader(TorchStream(8), batch_size=batch_size, drop_last=drop_last)
  assert len(ours) == len(theirs)
  got, want = list(ours), list(theirs)
  assert len(got) == len(want)  # one thread reads the stream however many workers: every item once
  for i, (a, b) in enumerate(zip(got, want)): assert_same(a, b, f"batch {i}")
  assert data_threads() == []

# ---------------------------------------------------------------- default_collate and default_convert
COLLATE_CASES = {
  "arrays": lambda: [np.arange(6, dtype=dt).reshape(2, 3) + i for i, dt in enumerate([np.float32] * 3)],
  "uint8_arrays": lambda: [np.array([i, 255 - i], np.uint8) for i in range(3)],
  "bool_arrays": lambda: [np.array([True, i > 0]) for i in range(3)],
  "float64_0d_arrays": lambda: [np.array(i * 1.5) for i in range(4)],
  "numpy_scalars": lambda: [np.float32(i / 3) for i in range(4)],
  "numpy_int_scalars": lambda: [np.int16(-i) for i in range(4)],
  "ints": lambda: [1, -2, 3],
  "floats": lambda: [0.1, 2.0, -3.5],
  "bools": lambda: [True, False, True],
  "strings": lambda: ["a", "bc", ""],
  "bytes": lambda: [b"x", b"yz"],
  "dicts": lambda: [{"a": i, "b": [float(i), np.float32(i)], "c": {"d": np.ones(2, np.int64) * i}} for i in range(3)],
  "ordered_dicts": lambda: [collections.OrderedDict([("z", i), ("y", "s")]) for i in range(2)],
  "namedtuples": lambda: [Point(np.array([i, i]), i * 2.0) for i in range(3)],
  "tuples": lambda: [(i, (np.float64(i), "t")) for i in range(3)],
  "lists": lambda: [[i, [i * 1.0, np.array([i])]] for i in range(3)],
}

@pytest.mark.parametrize("case", COLLATE_CASES)
def test_default_collate_matches_torch(case):
  assert_same(default_collate(COLLATE_CASES[case]()), tud.default_collate(COLLATE_CASES[case]()))

def test_default_collate_stacks_lucidgrad_tensors():
  rows = [np.arange(3, dtype=np.float32) * i for i in range(3)]
  assert_same(default_collate([(Tensor(r), 1) for r in rows]), tud.default_collate([(torch.from_numpy(r), 1) for r in rows]))

@pytest.mark.parametrize("case", ["arrays", "numpy_scalars", "dicts", "namedtuples", "tuples", "lists", "strings", "ints"])
def test_default_convert_matches_torch(case):
  for sample in COLLATE_CASES[case]():
    assert_same(default_convert(sample), tud.default_convert(sample))

def test_default_collate_errors_match_torch():
  for batch, err in [([[1, 2], [3]], RuntimeError), ([object(), object()], TypeError), ([np.array(["a"]), np.array(["b"])], TypeError),
                     ([np.zeros(2), np.zeros(3)], RuntimeError)]:
    with pytest.raises(err) as theirs: tud.default_collate(batch)
    with pytest.raises(err) as ours: default_collate(batch)
    if err is TypeError: assert str(ours.value) == str(theirs.value)
  with pytest.raises(RuntimeError, match=r"\(2,\) at entry 0 and \(3,\) at entry 1"): default_collate([np.zeros(2), np.zeros(3)])
  with pytest.raises(RuntimeError, match=r"\(2,\) at entry 0 and \(1,\) at entry 2"): default_collate([Tensor([1, 2]), Tensor([3, 4]), Tensor([5])])

# ---------------------------------------------------------------- samplers
def test_sequential_and_batch_samplers_match_torch():
  src = list(range(11))
  assert list(SequentialSampler(src)) == list(tud.SequentialSampler(src)) and len(SequentialSampler(src)) == 11
  for bs, drop in [(1, False), (3, False), (3, True), (11, True), (12, True), (12, False)]:
    ours, theirs = BatchSampler(SequentialSampler(src), bs, drop), tud.BatchSampler(tud.SequentialSampler(src), bs, drop)
    assert list(ours) == list(theirs) and len(ours) == len(theirs), (bs, drop)

@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(batch_size=-2), dict(batch_size=True), dict(batch_size=2.0), dict(drop_last="yes")])
def test_batch_sampler_rejects_what_torch_rejects(bad):
  kw = dict(batch_size=2, drop_last=False) | bad
  with pytest.raises(ValueError): tud.BatchSampler(range(4), **kw)
  with pytest.raises(ValueError, match=f"{list(bad)[0]}={bad[list(bad)[0]]!r}"): BatchSampler(range(4), **kw)

def test_random_samplers_draw_what_they_promise():
  g = Generator().manual_seed(0)
  for _ in range(2):
    assert sorted(RandomSampler(range(9), generator=g)) == list(range(9))
    assert sorted(SubsetRandomSampler([4, 8, 15, 16], generator=g)) == [4, 8, 15, 16]
  more = list(RandomSampler(range(5), num_samples=12, generator=g))  # two whole permutations, then 2 of a third
  assert len(more) == 12 and sorted(more[:5]) == sorted(more[5:10]) == list(range(5)) and len(set(more[10:])) == 2
  with_repl = list(RandomSampler(range(3), replacement=True, num_samples=300, generator=g))
  assert len(with_repl) == 300 and set(with_repl) == {0, 1, 2}
  assert len(RandomSampler(range(5), num_samples=12)) == len(tud.RandomSampler(range(5), num_samples=12)) == 12
  weighted = list(WeightedRandomSampler([0.0, 1.0, 3.0, 0.0], 400, generator=g))
  assert len(weighted) == 400 and set(weighted) == {1, 2} and 0.65 < weighted.count(2) / 400 < 0.85
  no_repl = list(WeightedRandomSampler([1.0, 0.0, 2.0, 5.0], 3, replacement=False, generator=g))
  assert sorted(no_repl) == [0, 2, 3]

def test_sampler_errors_match_torch():
  for make, theirs in [(lambda: RandomSampler(range(3), num_samples=0), lambda: tud.RandomSampler(range(3), num_samples=0)),
                       (lambda: RandomSampler(range(3), replacement=1), lambda: tud.RandomSampler(range(3), replacement=1)),
                       (lambda: WeightedRandomSampler([[1.0, 2.0]], 2), lambda: tud.WeightedRandomSampler([[1.0, 2.0]], 2)),
                       (lambda: WeightedRandomSampler([1.0, 2.0], 0), lambda: tud.WeightedRandomSampler([1.0, 2.0], 0))]:
    with pytest.raises((ValueError, TypeError)) as want: theirs()
    with pytest.raises(type(want.value)): make()
  with pytest.raises(ValueError, match="without replacement"): WeightedRandomSampler([1.0, 0.0, 1.0], 3, replacement=False)
  with pytest.raises(ValueError, match="from an empty dataset"): iter(RandomSampler([], num_samples=3))

# ---------------------------------------------------------------- shuffling and generators
def epochs(loader, n=2):
  return [np.concatenate([b[1].numpy() for b in loader]) for _ in range(n)]

@pytest.mark.parametrize("lucid", [False, True])
def test_shuffle_is_a_new_permutation_each_epoch_fixed_by_the_global_seed(lucid):
  ds = TensorDataset(Tensor(X), Tensor(np.arange(N))) if lucid else TensorDataset(X, np.arange(N))
  loader = DataLoader(ds, batch_size=4, shuffle=True)
  Tensor.manual_seed(0)
  a = epochs(loader, 3)
  for e in a: assert sorted(e.tolist()) == list(range(N))  # every item exactly once
  assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])
  Tensor.manual_seed(0)
  for x, y in zip(a, epochs(loader, 3)): np.testing.assert_array_equal(x, y)
  Tensor.manual_seed(1)
  assert not np.array_equal(epochs(loader, 1)[0], a[0])

def test_generators_make_the_order_reproducible():
  ds = TensorDataset(X, np.arange(N))
  def run(gen, **kw): return epochs(DataLoader(ds, batch_size=4, shuffle=True, generator=gen, **kw), 2)
  base = run(Generator().manual_seed(7))
  assert not np.array_equal(base[0], base[1])
  for same in (run(Generator().manual_seed(7)), run(7), run(Generator().manual_seed(7), num_workers=3), run(Generator().manual_seed(7), prefetch_factor=0)):
    for x, y in zip(base, same): np.testing.assert_array_equal(x, y)
  assert not np.array_equal(run(Generator().manual_seed(8))[0], base[0])
  # a NumPy Generator is used as it is; a torch.Generator seeds one from its initial_seed()
  np.testing.assert_array_equal(run(np.random.default_rng(3))[0], run(np.random.default_rng(3))[0])
  np.testing.assert_array_equal(run(torch.Generator().manual_seed(5))[1], run(Generator().manual_seed(5))[1])
  Tensor.manual_seed(4)
  a = list(RandomSampler(range(30)))
  Tensor.manual_seed(4)
  assert list(RandomSampler(range(30))) == a

def test_generator_api():
  assert Generator().initial_seed() == torch.Generator().initial_seed()  # the same default seed as torch's
  g = Generator()
  assert g.manual_seed(-1) is g and g.initial_seed() == torch.Generator().manual_seed(-1).initial_seed() == 2**64 - 1
  state = g.get_state()
  first = list(RandomSampler(range(20), generator=g))
  assert list(RandomSampler(range(20), generator=g.set_state(state))) == first
  assert isinstance(g.seed(), int) and g.seed() != g.seed()
  with pytest.raises(TypeError, match="seed must be an int"): g.manual_seed(1.5)
  with pytest.raises(TypeError, match="generator must be"): DataLoader(TensorDataset(X), shuffle=True, generator="seed")

# ---------------------------------------------------------------- random_split, Subset, ConcatDataset
def test_random_split_sizes_and_disjointness():
  ds = TensorDataset(X, Y)
  for lengths in ([3, 7], [0.5, 0.3, 0.2], [0.34, 0.33, 0.33], [10, 0]):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      parts = random_split(ds, lengths, generator=Generator().manual_seed(1))
      want = tud.random_split(range(N), lengths, generator=torch.Generator().manual_seed(1))
    assert [len(p) for p in parts] == [len(p) for p in want], lengths
    flat = [i for p in parts for i in p.indices]
    assert sorted(flat) == list(range(N))  # disjoint, and together the whole dataset
    for p in parts:
      for k in range(len(p)): np.testing.assert_array_equal(p[k][0], X[p.indices[k]])
  again = random_split(ds, [3, 7], generator=Generator().manual_seed(1))
  assert [p.indices for p in again] == [p.indices for p in random_split(ds, [3, 7], generator=Generator().manual_seed(1))]
  with pytest.warns(UserWarning, match="index 1 is 0"): random_split(range(3), [1.0, 0.0])

def test_random_split_errors():
  with pytest.raises(ValueError, match="sum to 9, not to the dataset's length 10"): random_split(TensorDataset(X), [4, 5])
  with pytest.raises(ValueError, match="fraction at index 0"): random_split(TensorDataset(X), [1.5, -0.5])
  with pytest.raises(ValueError): tud.random_split(range(10), [4, 5])

def test_subset_and_concat_match_torch():
  a, b = TensorDataset(X[:4], Y[:4]), TensorDataset(X[4:], Y[4:])
  ta, tb = tud.TensorDataset(torch.from_numpy(X[:4]), torch.from_numpy(Y[:4])), tud.TensorDataset(torch.from_numpy(X[4:]), torch.from_numpy(Y[4:]))
  cat, tcat = a + b, ta + tb
  assert isinstance(cat, ConcatDataset) and cat.cumulative_sizes == tcat.cumulative_sizes and len(cat) == len(tcat)
  for i in [0, 3, 4, 9, -1, -10]: np.testing.assert_array_equal(cat[i][0], tcat[i][0].numpy())
  with pytest.raises(IndexError, match="index 10 is out of range for 10 items"): cat[10]
  sub, tsub = Subset(cat, [9, 0, 4]), tud.Subset(tcat, [9, 0, 4])
  assert len(sub) == len(tsub) and [s[1] for s in sub.__getitems__([2, 0])] == [int(s[1]) for s in tsub.__getitems__([2, 0])]
  for i, (u, t) in enumerate(zip(DataLoader(sub, batch_size=2), tud.DataLoader(tsub, batch_size=2))): assert_same(u, t, f"batch {i}")
  chain = Stream(2) + Stream(3)
  assert isinstance(chain, ChainDataset) and len(chain) == 5 and [s[1] for s in chain] == [0.0, 0.5, 0.0, 0.5, 1.0]

# ---------------------------------------------------------------- the TensorDataset fast path
def per_item(ds, **kw):
  """The same loader with a collate_fn of our own: the per-item path (__getitem__ per index, default_collate)."""
  return DataLoader(ds, collate_fn=lambda b: default_collate(b), **kw)

def test_fast_path_equals_per_item_path():
  xs, ys = np.asfortranarray(X), Y.astype(np.uint8)  # a non-C-contiguous array, a narrow dtype
  for ds in (TensorDataset(xs, ys), Subset(Subset(TensorDataset(xs, ys), [9, 1, 2, 3, 4, 5, 6, 0]), [7, 6, 5, 1, 2, 3])):
    for kw in (dict(batch_size=4), dict(batch_size=3, drop_last=True), dict(batch_size=4, shuffle=True)):
      fast = list(DataLoader(ds, generator=Generator().manual_seed(2), **kw) if kw.get("shuffle") else DataLoader(ds, **kw))
      slow = list(per_item(ds, generator=Generator().manual_seed(2), **kw) if kw.get("shuffle") else per_item(ds, **kw))
      assert len(fast) == len(slow)
      for f, s in zip(fast, slow):
        assert isinstance(f, list) and [t.dtype for t in f] == [t.dtype for t in s]
        for a, b in zip(as_np(f), as_np(s)): np.testing.assert_array_equal(a, b)

def test_fast_path_is_one_gather_kernel_per_tensor_compiled_once(monkeypatch):
  def boom(self, index): raise AssertionError("the fast path called __getitem__")
  monkeypatch.setattr(TensorDataset, "__getitem__", boom)
  x, ids = Tensor(X).realize(), Tensor(np.arange(N)).realize()
  loader = DataLoader(TensorDataset(x, ids), batch_size=4, shuffle=True, generator=Generator().manual_seed(3))
  list(loader)  # the first epoch builds the kernels, for batches of 4 and of 2
  it, passes = iter(loader), GlobalCounters.codegen_passes
  for rows in (4, 4, 2):
    GlobalCounters.reset()
    xb, ib = next(it)
    assert GlobalCounters.kernel_count == 2, f"{GlobalCounters.kernel_count} kernels for one batch of two tensors"
    assert xb.shape == (rows, 3)
    np.testing.assert_array_equal(xb.numpy(), X[ib.numpy()])
  assert GlobalCounters.codegen_passes == passes, "a later epoch compiled a kernel"

def test_fast_path_batch_values_and_independence():
  x, y = Tensor(X).realize(), Tensor(Y).realize()
  order = [2, 3, 4, 5, 9, 0, 1, 8]  # a contiguous run, then not
  for (xb, yb), rows in zip(DataLoader(TensorDataset(x, y), batch_size=4, sampler=order), [order[:4], order[4:]]):
    np.testing.assert_array_equal(xb.numpy(), X[rows])
    np.testing.assert_array_equal(yb.numpy(), Y[rows])
    xb.assign(xb * 0).realize()  # a batch is a copy: writing it leaves the dataset as it was
  np.testing.assert_array_equal(x.numpy(), X)
  for xb, _ in DataLoader(TensorDataset(X, Y), batch_size=5):
    xb.assign(xb * 0).realize()
  np.testing.assert_array_equal(X, np.arange(N * 3, dtype=np.float32).reshape(N, 3) * 0.5 - 4)

def test_fast_path_index_errors():
  with pytest.raises(IndexError, match="index 10 is out of range for a TensorDataset of 10 items"):
    list(DataLoader(TensorDataset(X, Y), batch_sampler=[[0, 1], [10]]))
  with pytest.raises(IndexError, match="index 3 is out of range for a Subset of 3 items"):
    list(DataLoader(Subset(TensorDataset(X), [1, 2, 3]), sampler=[0, 3], batch_size=2))
  assert data_threads() == []

# ---------------------------------------------------------------- threads
class Recorded:
  """Rows of X as NumPy; records the thread that read each item; raises `error` at index `bad`."""
  def __init__(self, bad=None, error=KeyError): self.threads, self.bad, self.error = [], bad, error
  def __len__(self): return N
  def __getitem__(self, i):
    self.threads.append(threading.current_thread().name)
    if i == self.bad: raise self.error(f"cannot read index {i}")
    return X[i], int(Y[i])

def test_workers_read_the_dataset_on_threads_in_order_and_end():
  inits, infos = [], []
  class Info(Recorded):
    def __getitem__(self, i):
      infos.append(get_worker_info())
      return super().__getitem__(i)
  ds = Info()
  loader = DataLoader(ds, batch_size=2, num_workers=3, prefetch_factor=2, worker_init_fn=inits.append)
  it = iter(loader)
  first = next(it)
  assert 0 < len(data_threads()) <= 3
  rest = list(it)
  assert data_threads() == []
  for i, (xb, yb) in enumerate([first] + rest):
    np.testing.assert_array_equal(xb.numpy(), X[2 * i:2 * i + 2])
    np.testing.assert_array_equal(yb.numpy(), Y[2 * i:2 * i + 2])
  assert ds.threads[:2] == ["MainThread"] * 2  # the first batch is read here, to see what the dataset returns
  assert all(t.startswith("lucidgrad-data") for t in ds.threads[2:])
  assert set(inits) <= {0, 1, 2} and len(inits) == len(set(inits)) > 0
  assert infos[:2] == [None, None] and all(w.num_workers == 3 and w.dataset is ds and w.seed - w.id == infos[2].seed - infos[2].id for w in infos[2:])
  assert get_worker_info() is None
  ds = Recorded()
  assert len(list(DataLoader(ds, batch_size=5, num_workers=2, prefetch_factor=0))) == 2  # no prefetch: no threads
  assert set(ds.threads) == {"MainThread"}

def test_fast_path_thread_ends_when_the_iterator_is_exhausted_dropped_or_closed():
  loader = DataLoader(TensorDataset(X, Y), batch_size=2)
  it = iter(loader)
  next(it)
  assert len(data_threads()) == 1
  del it
  assert data_threads() == []
  for _ in loader: break
  assert data_threads() == []
  it = iter(loader)
  next(it)
  it.close()
  assert data_threads() == [] and list(it) == []
  assert len(list(loader)) == 5 and data_threads() == []
  assert list(DataLoader(TensorDataset(X, Y), batch_size=2, prefetch_factor=0)) and data_threads() == []

class Boom(Exception): pass

@pytest.mark.parametrize("bad", [1, 5])  # in the first batch (read here), in a later one (read by a worker)
def test_worker_errors_reraise_with_their_type(bad):
  ds = Recorded(bad=bad, error=Boom)
  it = iter(DataLoader(ds, batch_size=2, num_workers=2))
  batches = []
  with pytest.raises(Boom, match=f"cannot read index {bad}"):
    while True: batches.append(next(it))
  assert len(batches) == bad // 2
  np.testing.assert_array_equal(next(it)[0].numpy(), X[bad // 2 * 2 + 2:bad // 2 * 2 + 4])  # the batches after it still come
  del it
  assert data_threads() == []

def test_timeout_names_the_wait():
  release = threading.Event()
  class Slow(Recorded):
    def __getitem__(self, i):
      if i >= 1: release.wait(10)
      return super().__getitem__(i)
  it = iter(DataLoader(Slow(), num_workers=1, timeout=0.05))
  next(it)
  with pytest.raises(RuntimeError, match="timed out after 0.05 seconds"): next(it)
  release.set()
  it.close()
  assert data_threads() == []

def test_dataset_of_lucidgrad_tensors_is_read_in_the_iterating_thread():
  x = Tensor(X).realize()
  class Rows(Recorded):
    def __getitem__(self, i):
      self.threads.append(threading.current_thread().name)
      return x[i]
  ds = Rows()
  loader = DataLoader(ds, batch_size=5, num_workers=2)
  with pytest.warns(UserWarning, match="num_workers=2 is not used"): got = [b.numpy() for b in loader]
  np.testing.assert_array_equal(np.concatenate(got), X)
  assert set(ds.threads) == {"MainThread"} and data_threads() == []
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert len(list(loader)) == 2  # decided once per loader

# ---------------------------------------------------------------- bad arguments
BAD_LOADER_ARGS = {  # the arguments, and what our message must name
  "batch_size=0": (dict(batch_size=0), "batch_size=0"),
  "batch_size=-1": (dict(batch_size=-1), "batch_size=-1"),
  "sampler and shuffle": (dict(sampler=[0, 1], shuffle=True), "sampler option is mutually exclusive with shuffle"),
  "batch_sampler and batch_size": (dict(batch_sampler=[[0]], batch_size=2), "batch_sampler option is mutually exclusive with batch_size"),
  "batch_sampler and drop_last": (dict(batch_sampler=[[0]], drop_last=True), "batch_sampler option is mutually exclusive"),
  "batch_size=None and drop_last": (dict(batch_size=None, drop_last=True), "batch_size=None .* exclusive with drop_last"),
  "num_workers=-1": (dict(num_workers=-1), "num_workers=-1"),
  "timeout=-1": (dict(timeout=-1), "timeout=-1"),
  "persistent_workers without workers": (dict(persistent_workers=True), "persistent_workers option needs num_workers > 0"),
}

@pytest.mark.parametrize("case", BAD_LOADER_ARGS)
def test_bad_loader_arguments_raise_like_torch(case):
  kw, message = BAD_LOADER_ARGS[case]
  with pytest.raises(ValueError): tud.DataLoader(tud.TensorDataset(torch.from_numpy(X)), **kw)
  with pytest.raises(ValueError, match=message): DataLoader(TensorDataset(X), **kw)

def test_bad_arguments_for_iterable_datasets_and_prefetch():
  for kw in (dict(shuffle=True), dict(sampler=[0]), dict(batch_sampler=[[0]])):
    with pytest.raises(ValueError, match="IterableDataset: expected unspecified"): DataLoader(Stream(3), **kw)
    with pytest.raises(ValueError): tud.DataLoader(TorchStream(3), **kw)
  with pytest.raises(ValueError, match="prefetch_factor=-1"): DataLoader(TensorDataset(X), prefetch_factor=-1)
  with pytest.raises(TypeError): len(DataLoader(Stream(3, with_len=False)))

def test_bad_tensor_datasets():
  with pytest.raises(ValueError, match=r"first dims \[10, 9\]"): TensorDataset(X, Y[:9])
  with pytest.raises(ValueError, match=r"first dims \[10, 10, 4\]"): TensorDataset(Tensor(X), Y, Tensor(Y[:4]))
  with pytest.raises(ValueError, match="at least one tensor"): TensorDataset()
  with pytest.raises(TypeError, match="tensor 1 is a list"): TensorDataset(X, [1, 2])
  with pytest.raises(ValueError, match="tensor 0 is 0-d"): TensorDataset(np.array(1.0))
  with pytest.raises(ValueError, match="tensor 1 is 0-d"): TensorDataset(X, Tensor(2.0))
  assert len(TensorDataset(Tensor(X), Y)) == N

def test_imports_as_torch_spells_them():
  import lucidgrad.utils
  assert lucidgrad.utils.data is lud and set(lud.__all__) <= set(dir(lud))
  assert issubclass(TensorDataset, Dataset) and issubclass(IterableDataset, Dataset)
  assert dtypes.default_float == dtypes.float32  # default_collate makes Python floats float64 all the same, as torch
  assert default_collate([1.0]).dtype == dtypes.float64
