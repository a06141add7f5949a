"""Data loading as torch.utils.data: map-style and iterable datasets, samplers, random_split, default_collate, and a
DataLoader that batches a dataset, shuffles it with a seedable generator and prepares the next batches on a background
thread. A TensorDataset of lucidgrad Tensors or NumPy arrays is batched with one indexed load per tensor, never item by
item. Built on the public Tensor API only.

Threads, not processes. lucidgrad's graph is not thread-safe, so anything that builds a lucidgrad Tensor (collating,
indexing a Tensor, drawing from the global generator) runs in the thread that iterates the loader; a background thread
only does host work: NumPy gathers for a TensorDataset, and, with num_workers > 0, the dataset's own __getitem__."""
from __future__ import annotations
import bisect, collections.abc, concurrent.futures, copy, dataclasses, itertools, math, threading, warnings, weakref
from typing import Any, Callable, Iterable, Iterator, Sequence
import numpy as np
from lucidgrad import Tensor, dtypes

__all__ = ["Generator", "Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset", "ChainDataset", "random_split",
           "Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler", "BatchSampler",
           "default_collate", "default_convert", "get_worker_info", "WorkerInfo", "DataLoader"]

# ---- random streams ----
_U64 = (1 << 64) - 1

class Generator:
  """torch.Generator for data loading: a seedable random stream (NumPy's PCG64) that DataLoader(shuffle=True), the random
  samplers and random_split draw from. Each epoch draws more of it, so epochs differ and one seed repeats the same
  epochs. Unseeded, it starts from torch.Generator()'s default seed (67280421310721)."""
  def __init__(self, device: str = "cpu"):
    self.device = device  # accepted for torch's signature; the stream lives on the host
    self.manual_seed(67280421310721)
  def manual_seed(self, seed: int) -> Generator:
    """Restart the stream from `seed` (an int; a negative one wraps to 64 bits, as in torch); returns the generator."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)): raise TypeError(f"manual_seed: seed must be an int, got {seed!r}")
    self._seed = int(seed) & _U64
    self._rng = np.random.Generator(np.random.PCG64(self._seed))
    return self
  def initial_seed(self) -> int:
    """The seed the stream started from."""
    return self._seed
  def seed(self) -> int:
    """Restart the stream from a fresh seed taken from the operating system's entropy; returns that seed."""
    return self.manual_seed(np.random.SeedSequence().entropy & _U64)._seed
  def get_state(self) -> dict:
    """A copy of the stream's state (NumPy's bit-generator state), for set_state."""
    return copy.deepcopy(self._rng.bit_generator.state)
  def set_state(self, state: dict) -> Generator:
    """Continue the stream from a state get_state returned; returns the generator."""
    self._rng.bit_generator.state = state
    return self
  def __repr__(self): return f"<lucidgrad.utils.data.Generator seed={self._seed}>"

def _as_generator(generator, who: str) -> Generator | np.random.Generator | None:
  """What a `generator=` argument becomes: None (lucidgrad's global generator), a Generator, or a NumPy Generator, used
  as it is (its state advances); an int seeds a new Generator; an object with initial_seed() (a torch.Generator) seeds a
  new Generator from it once, here."""
  if generator is None or isinstance(generator, (Generator, np.random.Generator)): return generator
  if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool): return Generator().manual_seed(generator)
  if callable(getattr(generator, "initial_seed", None)): return Generator().manual_seed(int(generator.initial_seed()))
  raise TypeError(f"{who}: generator must be a lucidgrad.utils.data.Generator, an int seed, a numpy.random.Generator or an object "
                  f"with initial_seed() (a torch.Generator); got a {type(generator).__name__}")

def _global_seed() -> int:
  """48 bits from lucidgrad's global generator (one small kernel on the CPU), so Tensor.manual_seed fixes what follows."""
  hi, lo = Tensor.randint(2, low=0, high=1 << 24, device="CPU").numpy().tolist()
  return hi << 24 | lo

def _rng(generator: Generator | np.random.Generator | None) -> np.random.Generator:
  """The NumPy stream to draw from now: the generator's own, or (None) a new one seeded from the global generator."""
  if generator is None: return np.random.Generator(np.random.PCG64(_global_seed()))
  return generator if isinstance(generator, np.random.Generator) else generator._rng

def _check_positive_int(value, what: str, who: str) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
    raise ValueError(f"{who}: {what} should be a positive integer value, but got {what}={value!r}")

def _check_bool(value, what: str, who: str) -> None:
  if not isinstance(value, bool): raise TypeError(f"{who}: {what} should be a boolean value, but got {what}={value!r}")

# ---- datasets ----
class Dataset:
  """torch.utils.data.Dataset: a map-style dataset, `dataset[i]` for i in range(len(dataset)). Subclass it and define
  __getitem__ and __len__ (and, optionally, __getitems__(indices) returning a batch's samples at once).
  `a + b` is ConcatDataset([a, b])."""
  def __getitem__(self, index):
    raise NotImplementedError(f"{type(self).__name__} must define __getitem__")
  def __add__(self, other: Dataset) -> ConcatDataset: return ConcatDataset([self, other])

class IterableDataset(Dataset):
  """torch.utils.data.IterableDataset: a stream of samples. Subclass it and define __iter__; a DataLoader reads it in order
  (no sampler, no shuffle). `a + b` is ChainDataset([a, b])."""
  def __iter__(self) -> Iterator:
    raise NotImplementedError(f"{type(self).__name__} must define __iter__")
  def __add__(self, other: Dataset) -> ChainDataset: return ChainDataset([self, other])  # type: ignore[override]

class TensorDataset(Dataset):
  """torch.utils.data.TensorDataset: item i is the tuple (t[i] for t in tensors). The tensors are lucidgrad Tensors or NumPy
  arrays (mixed as you like) whose first dims agree. A DataLoader batches it with one t[indices] per tensor."""
  def __init__(self, *tensors: Tensor | np.ndarray):
    if not tensors: raise ValueError("TensorDataset needs at least one tensor")
    for k, t in enumerate(tensors):
      if not isinstance(t, (Tensor, np.ndarray)):
        raise TypeError(f"TensorDataset: tensor {k} is a {type(t).__name__}; pass lucidgrad Tensors or NumPy arrays")
      if not t.shape: raise ValueError(f"TensorDataset: tensor {k} is 0-d; each needs a first dim to index samples by")
    if len({t.shape[0] for t in tensors}) > 1:
      raise ValueError(f"TensorDataset: size mismatch between tensors: first dims {[t.shape[0] for t in tensors]} "
                       f"(shapes {[tuple(t.shape) for t in tensors]}); every tensor needs the same number of samples")
    self.tensors = tuple(tensors)
  def __getitem__(self, index): return tuple(t[index] for t in self.tensors)
  def __len__(self) -> int: return self.tensors[0].shape[0]

class Subset(Dataset):
  """torch.utils.data.Subset: the items of `dataset` at `indices`, in that order (subset[i] is dataset[indices[i]])."""
  def __init__(self, dataset: Dataset, indices: Sequence[int]):
    self.dataset, self.indices = dataset, indices
  def __getitem__(self, idx):
    if isinstance(idx, list): return self.dataset[[self.indices[i] for i in idx]]
    return self.dataset[self.indices[idx]]
  def __getitems__(self, indices: list[int]) -> list:
    """The samples at `indices`, through the dataset's own __getitems__ when it has one."""
    picked = [self.indices[i] for i in indices]
    getitems = getattr(self.dataset, "__getitems__", None)
    return getitems(picked) if callable(getitems) else [self.dataset[i] for i in picked]
  def __len__(self) -> int: return len(self.indices)

class ConcatDataset(Dataset):
  """torch.utils.data.ConcatDataset: map-style datasets one after another; `cumulative_sizes` holds where each ends."""
  def __init__(self, datasets: Iterable[Dataset]):
    self.datasets = list(datasets)
    if not self.datasets: raise ValueError("ConcatDataset: datasets should not be an empty iterable")
    for k, d in enumerate(self.datasets):
      if isinstance(d, IterableDataset): raise TypeError(f"ConcatDataset: dataset {k} is an IterableDataset; chain streams with ChainDataset")
    self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))  # type: ignore[arg-type]
  def __len__(self) -> int: return self.cumulative_sizes[-1]
  def __getitem__(self, idx: int):
    n = len(self)
    if not -n <= idx < n: raise IndexError(f"ConcatDataset: index {idx} is out of range for {n} items")
    if idx < 0: idx += n
    k = bisect.bisect_right(self.cumulative_sizes, idx)
    return self.datasets[k][idx - (self.cumulative_sizes[k - 1] if k else 0)]

class ChainDataset(IterableDataset):
  """torch.utils.data.ChainDataset: iterable datasets read one after another."""
  def __init__(self, datasets: Iterable[Dataset]):
    self.datasets = list(datasets)
    for k, d in enumerate(self.datasets):
      if not isinstance(d, IterableDataset): raise TypeError(f"ChainDataset: dataset {k} is a {type(d).__name__}, not an IterableDataset")
  def __iter__(self) -> Iterator: return itertools.chain.from_iterable(self.datasets)
  def __len__(self) -> int: return sum(len(d) for d in self.datasets)  # type: ignore[arg-type]

def random_split(dataset: Dataset, lengths: Sequence[int | float], generator=None) -> list[Subset]:
  """torch.utils.data.random_split: disjoint Subsets of the given lengths, covering the dataset, drawn from one random
  permutation. Fractions summing to 1 are allowed: each gets floor(fraction * len), and what is left goes one item at a
  time to the first lengths. `generator` as DataLoader's (None: lucidgrad's global generator)."""
  lengths, n = list(lengths), len(dataset)  # type: ignore[arg-type]
  if lengths and math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
    for i, frac in enumerate(lengths):
      if not 0 <= frac <= 1: raise ValueError(f"random_split: fraction at index {i} is {frac}, not between 0 and 1")
    counts = [math.floor(n * frac) for frac in lengths]
    for i in range(n - sum(counts)): counts[i % len(counts)] += 1
    for i, c in enumerate(counts):
      if c == 0: warnings.warn(f"random_split: length of split at index {i} is 0; this leads to an empty Subset", stacklevel=2)
    lengths = counts
  for i, size in enumerate(lengths):
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
      raise ValueError(f"random_split: lengths must be non-negative ints or fractions summing to 1; length {i} is {size!r}")
  if sum(lengths) != n: raise ValueError(f"random_split: the lengths {lengths} sum to {sum(lengths)}, not to the dataset's length {n}")
  perm = _rng(_as_generator(generator, "random_split")).permutation(n).tolist()
  return [Subset(dataset, perm[end - size:end]) for end, size in zip(itertools.accumulate(lengths), lengths)]

# ---- samplers: iterables of indices (or, for a batch sampler, of lists of indices) ----
class Sampler:
  """torch.utils.data.Sampler: an iterable of dataset indices (or, for a batch sampler, lists of them). Subclass it and
  define __iter__, and __len__ for len(loader)."""
  def __init__(self, data_source=None): pass
  def __iter__(self) -> Iterator:
    raise NotImplementedError(f"{type(self).__name__} must define __iter__")

class SequentialSampler(Sampler):
  """torch.utils.data.SequentialSampler: 0, 1, ..., len(data_source) - 1."""
  def __init__(self, data_source):
    self.data_source = data_source
  def __iter__(self) -> Iterator[int]: return iter(range(len(self.data_source)))
  def __len__(self) -> int: return len(self.data_source)

class RandomSampler(Sampler):
  """torch.utils.data.RandomSampler: a new random permutation of the indices each time it is iterated (or, with
  replacement, num_samples independent draws); without replacement, num_samples > len gives whole permutations and then
  the start of one more. Randomness from `generator` (see Generator), or, for None, from lucidgrad's global generator
  drawn when iteration starts, so Tensor.manual_seed(s) fixes every epoch's order."""
  def __init__(self, data_source, replacement: bool = False, num_samples: int | None = None, generator=None):
    _check_bool(replacement, "replacement", "RandomSampler")
    self.data_source, self.replacement, self._num_samples = data_source, replacement, num_samples
    self.generator = _as_generator(generator, "RandomSampler")
    _check_positive_int(self.num_samples, "num_samples", "RandomSampler")
  @property
  def num_samples(self) -> int:
    """How many indices one pass yields: the dataset's length unless given."""
    return len(self.data_source) if self._num_samples is None else self._num_samples
  def __iter__(self) -> Iterator[int]:
    # the draws are made here, not when the first index is asked for
    if (n := len(self.data_source)) == 0: raise ValueError(f"RandomSampler: cannot draw num_samples={self.num_samples} from an empty dataset")
    rng = _rng(self.generator)
    if self.replacement: return iter(rng.integers(0, n, self.num_samples).tolist())
    whole, rest = divmod(self.num_samples, n)
    return itertools.chain(*[rng.permutation(n).tolist() for _ in range(whole)], rng.permutation(n)[:rest].tolist() if rest else [])
  def __len__(self) -> int: return self.num_samples

class SubsetRandomSampler(Sampler):
  """torch.utils.data.SubsetRandomSampler: the given indices in a new random order each time it is iterated."""
  def __init__(self, indices: Sequence[int], generator=None):
    self.indices, self.generator = indices, _as_generator(generator, "SubsetRandomSampler")
  def __iter__(self) -> Iterator[int]:
    return iter([self.indices[i] for i in _rng(self.generator).permutation(len(self.indices)).tolist()])
  def __len__(self) -> int: return len(self.indices)

class WeightedRandomSampler(Sampler):
  """torch.utils.data.WeightedRandomSampler: num_samples indices in [0, len(weights)), index i drawn with probability
  proportional to weights[i], with or without replacement."""
  def __init__(self, weights, num_samples: int, replacement: bool = True, generator=None):
    _check_positive_int(num_samples, "num_samples", "WeightedRandomSampler")
    _check_bool(replacement, "replacement", "WeightedRandomSampler")
    w = np.asarray(weights.numpy() if isinstance(weights, Tensor) else weights, dtype=np.float64)
    if w.ndim != 1: raise ValueError(f"WeightedRandomSampler: weights should be a 1d sequence but given weights have shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any() or not w.sum() > 0:
      raise ValueError("WeightedRandomSampler: weights must be finite, non-negative and not all zero")
    if not replacement and num_samples > np.count_nonzero(w):
      raise ValueError(f"WeightedRandomSampler: cannot draw num_samples={num_samples} without replacement from {np.count_nonzero(w)} non-zero weights")
    self.weights, self.num_samples, self.replacement = w, int(num_samples), replacement
    self.generator = _as_generator(generator, "WeightedRandomSampler")
  def __iter__(self) -> Iterator[int]:
    rng = _rng(self.generator)
    return iter(rng.choice(len(self.weights), self.num_samples, replace=self.replacement, p=self.weights / self.weights.sum()).tolist())
  def __len__(self) -> int: return self.num_samples

class BatchSampler(Sampler):
  """torch.utils.data.BatchSampler: the sampler's indices in lists of batch_size; the last, shorter list is dropped when
  drop_last."""
  def __init__(self, sampler: Sampler | Iterable[int], batch_size: int, drop_last: bool):
    _check_positive_int(batch_size, "batch_size", "BatchSampler")
    if not isinstance(drop_last, bool): raise ValueError(f"BatchSampler: drop_last should be a boolean value, but got drop_last={drop_last!r}")
    self.sampler, self.batch_size, self.drop_last = sampler, int(batch_size), drop_last
  def __iter__(self) -> Iterator[list[int]]: return self._batches(iter(self.sampler))  # the sampler starts (draws) now
  def _batches(self, it: Iterator[int]) -> Iterator[list[int]]:
    while batch := list(itertools.islice(it, self.batch_size)):
      if self.drop_last and len(batch) < self.batch_size: return
      yield batch
  def __len__(self) -> int:
    n = len(self.sampler)  # type: ignore[arg-type]
    return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

# ---- collation ----
_COLLATE_ERROR = "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"

def _is_text(a: np.ndarray) -> bool: return a.dtype.kind in "OSUV"  # objects, bytes, strings, records: no Tensor holds them

def _rebuild_mapping(elem: collections.abc.Mapping, values: dict):
  """`values` in a mapping of elem's type where that type can be built (a copy updated, for a mutable one), else a dict."""
  try:
    if isinstance(elem, collections.abc.MutableMapping):
      clone = copy.copy(elem)
      clone.update(values)
      return clone
    return type(elem)(values)  # type: ignore[call-arg]
  except TypeError: return values

def _rebuild_sequence(elem: Sequence, values: list):
  """`values` in a sequence of elem's type where that type can be built (a copy written into, for a mutable one), else a list."""
  try:
    if isinstance(elem, collections.abc.MutableSequence):
      clone = copy.copy(elem)
      for i, v in enumerate(values): clone[i] = v
      return clone
    return type(elem)(values)  # type: ignore[call-arg]
  except TypeError: return values

def _check_same_shape(batch: list, what: str) -> None:
  for i, x in enumerate(batch):
    if tuple(x.shape) != tuple(batch[0].shape):
      raise RuntimeError(f"default_collate: stack expects each {what} to be equal size, but got {tuple(batch[0].shape)} at entry 0 "
                         f"and {tuple(x.shape)} at entry {i}")

def default_collate(batch: Sequence):
  """torch.utils.data.default_collate: a list of samples into one batch. Tensors and NumPy arrays are stacked into a
  Tensor with a new first dim; Python ints into an int64 Tensor (bools: bool), Python floats into a float64 Tensor (as
  torch: not the default float), NumPy scalars into a Tensor of their dtype; strings and bytes stay a list; dicts,
  namedtuples, tuples and lists are collated field by field (a tuple gives a list, as in torch). Lazy, like any op."""
  elem = batch[0]
  if isinstance(elem, Tensor):
    _check_same_shape(batch, "tensor")
    return Tensor.stack(*batch)
  if isinstance(elem, np.ndarray):
    if _is_text(elem): raise TypeError(_COLLATE_ERROR.format(elem.dtype))
    _check_same_shape(batch, "array")
    return Tensor(np.stack(batch))  # one Tensor from one host array: no per-item tensors
  if isinstance(elem, (np.bool_, np.number)): return Tensor(np.array(batch))
  if isinstance(elem, float): return Tensor(batch, dtype=dtypes.float64)
  if isinstance(elem, int): return Tensor(batch)
  if isinstance(elem, (str, bytes)): return batch
  if isinstance(elem, collections.abc.Mapping): return _rebuild_mapping(elem, {k: default_collate([d[k] for d in batch]) for k in elem})
  # a field's samples go on as zip's tuple, so strings under a tuple or list stay a tuple, as torch's
  if isinstance(elem, tuple) and hasattr(elem, "_fields"): return type(elem)(*(default_collate(s) for s in zip(*batch)))
  if isinstance(elem, collections.abc.Sequence):
    if any(len(s) != len(elem) for s in batch): raise RuntimeError("each element in list of batch should be of equal size")
    fields = [default_collate(s) for s in zip(*batch)]
    return fields if isinstance(elem, tuple) else _rebuild_sequence(elem, fields)
  raise TypeError(_COLLATE_ERROR.format(type(elem)))

def default_convert(data):
  """torch.utils.data.default_convert, what a DataLoader with batch_size=None applies to each sample: NumPy arrays and
  scalars become Tensors (text arrays stay), containers are converted field by field (a tuple gives a list), anything
  else (Python numbers, strings, Tensors) is returned as it is."""
  if isinstance(data, np.ndarray): return data if _is_text(data) else Tensor(data)
  if isinstance(data, (np.bool_, np.number)): return Tensor(data)
  if isinstance(data, collections.abc.Mapping): return _rebuild_mapping(data, {k: default_convert(v) for k, v in data.items()})
  if isinstance(data, tuple) and hasattr(data, "_fields"): return type(data)(*(default_convert(d) for d in data))
  if isinstance(data, tuple): return [default_convert(d) for d in data]
  if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
    return _rebuild_sequence(data, [default_convert(d) for d in data])
  return data

# ---- worker threads ----
@dataclasses.dataclass(frozen=True)
class WorkerInfo:
  """What get_worker_info() gives inside a DataLoader worker thread: its id, how many there are, a seed of its own and
  the dataset (the loader's own object: threads share it). The seed is the pass's base seed + id, the base seed made
  from the loader's Generator's initial seed and the number of passes so far: reproducible, and drawn from no stream,
  so num_workers never changes the shuffle order."""
  id: int
  num_workers: int
  seed: int
  dataset: Any

_worker = threading.local()

def get_worker_info() -> WorkerInfo | None:
  """torch.utils.data.get_worker_info: the WorkerInfo of the DataLoader worker thread this runs in; None elsewhere."""
  return getattr(_worker, "info", None)

def _start_worker(ids: Iterator[int], num_workers: int, base_seed: int, dataset) -> None:
  worker_id = next(ids)
  _worker.info = WorkerInfo(worker_id, num_workers, base_seed + worker_id, dataset) if num_workers else None
  _worker.initialised = False

def _run_in_worker(fetch: Callable, worker_init_fn: Callable | None, job):
  """A job in a worker thread: worker_init_fn(id) first, the first time this thread runs one (so what it raises reaches
  the consumer like a fetch's error, with its own type)."""
  if worker_init_fn is not None and (info := get_worker_info()) is not None and not _worker.initialised:
    _worker.initialised = True
    worker_init_fn(info.id)
  return fetch(job)

def _holds_tensor(x, depth: int = 0) -> bool:
  """Does a fetched sample (or batch of samples) hold a lucidgrad Tensor anywhere in its containers?"""
  if isinstance(x, Tensor): return True
  if depth > 8 or isinstance(x, (str, bytes, np.ndarray)): return False
  if isinstance(x, collections.abc.Mapping): return any(_holds_tensor(v, depth + 1) for v in x.values())
  if isinstance(x, collections.abc.Sequence): return any(_holds_tensor(v, depth + 1) for v in x)
  return False

# ---- the DataLoader ----
class _End:
  """What a fetch from an exhausted IterableDataset returns."""
_END = _End()

class _Stream:
  """An IterableDataset read in batches (or item by item): the iterator is made on the first fetch and shared by every
  fetch after it, one at a time (one worker thread at most)."""
  def __init__(self, dataset: IterableDataset, batch_size: int | None, drop_last: bool):
    self.dataset, self.batch_size, self.drop_last, self.it = dataset, batch_size, drop_last, None
  def fetch(self, _job=None):
    if self.it is None: self.it = iter(self.dataset)
    if self.batch_size is None: return next(self.it, _END)
    batch = list(itertools.islice(self.it, self.batch_size))
    return _END if not batch or (self.drop_last and len(batch) < self.batch_size) else batch

class _Tables:
  """The fast path for a TensorDataset (under any Subsets): a batch is each tensor indexed once by the batch's indices.
  fetch (a worker thread) turns the indices into a NumPy array, checks them and gathers the NumPy arrays (a contiguous run
  of indices is a slice); finish (the consumer's thread) makes one Tensor per NumPy batch and indexes each lucidgrad
  Tensor with the whole index array, a direct gather (docs/design/0014), and realizes them together: one kernel each,
  compiled once for every batch of that size. A lucidgrad Tensor is gathered even for a contiguous run: a slice's offset
  is part of its kernel, so each batch's slice would be compiled anew."""
  def __init__(self, tensors: tuple, index_map: np.ndarray | None):
    self.tensors, self.index_map, self.n = tensors, index_map, tensors[0].shape[0]
  def fetch(self, indices):
    idx = np.asarray(indices)
    if idx.size == 0: idx = idx.astype(np.int64).reshape(0)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
      raise TypeError(f"DataLoader: a batch of a TensorDataset must be a list of int indices, got {str(indices)[:80]}")
    if self.index_map is not None:
      m = len(self.index_map)
      if (bad := idx[(idx < -m) | (idx >= m)]).size: raise IndexError(f"DataLoader: index {bad[0]} is out of range for a Subset of {m} items")
      idx = self.index_map[idx]
    if (bad := idx[(idx < -self.n) | (idx >= self.n)]).size:
      raise IndexError(f"DataLoader: index {bad[0]} is out of range for a TensorDataset of {self.n} items")
    idx = np.where(idx < 0, idx + self.n, idx)
    run = len(idx) > 1 and idx[-1] - idx[0] == len(idx) - 1 and bool((np.diff(idx) == 1).all())
    rows = slice(int(idx[0]), int(idx[-1]) + 1) if run else idx
    return idx, [t[rows] if isinstance(t, np.ndarray) else None for t in self.tensors]
  def finish(self, fetched) -> list[Tensor]:
    idx, host = fetched
    out = [Tensor(a) if a is not None else t[idx] for t, a in zip(self.tensors, host)]
    if gathered := [o for o, a in zip(out, host) if a is None]: Tensor.realize(*gathered)
    return out

def _tables(dataset) -> _Tables | None:
  """The fast path's tables for a TensorDataset, or Subsets of one with index lists, whose __getitem__ is not overridden."""
  index_map = None
  while type(dataset).__getitem__ is Subset.__getitem__ and isinstance(dataset, Subset):
    if not isinstance(dataset.indices, (list, tuple, range, np.ndarray)): return None
    ix = np.asarray(dataset.indices)
    if ix.size == 0: ix = ix.astype(np.int64).reshape(0)
    if ix.ndim != 1 or ix.dtype.kind not in "iu": return None
    index_map = ix if index_map is None else ix[index_map]  # an outer Subset's positions index the inner one's indices
    dataset = dataset.dataset
  if not isinstance(dataset, TensorDataset) or type(dataset).__getitem__ is not TensorDataset.__getitem__: return None
  return _Tables(dataset.tensors, index_map)

def _fetch_samples(dataset, batched: bool, index):
  """The samples of one batch (its dataset's __getitems__ if it has one), or the one sample at `index` without batching."""
  if not batched: return dataset[index]
  getitems = getattr(dataset, "__getitems__", None)
  return getitems(index) if callable(getitems) else [dataset[i] for i in index]

class DataLoader:
  """torch.utils.data.DataLoader: iterate a dataset in batches. The same arguments and rules as torch's: a map-style
  dataset is read in the order of `sampler` (SequentialSampler, or RandomSampler when shuffle=True, drawing a new order
  each epoch from `generator` or, for None, from lucidgrad's global generator: Tensor.manual_seed fixes it), grouped by
  `batch_sampler` (BatchSampler(sampler, batch_size, drop_last) by default) and collated by `collate_fn`
  (default_collate); batch_size=None turns batching off (each sample goes through default_convert). An IterableDataset
  is read in order. len(loader) is the number of batches.

  A TensorDataset (or a Subset of one) under default_collate takes the fast path: each batch is one indexed load per
  tensor, realized (one gather kernel per lucidgrad Tensor, one Tensor made from a NumPy gather per array); the
  indices are prepared and the NumPy gathers done on a background thread, prefetch_factor batches ahead
  (prefetch_factor=0: no thread). num_workers=k > 0 runs a generic dataset's __getitem__/__getitems__ on k threads (not
  processes), prefetch_factor * k batches ahead, in order; collate_fn runs in the iterating thread. The dataset's first
  batch is read in the iterating thread: if it holds lucidgrad Tensors, which only that thread may build, the workers
  are not used (a warning says so). The threads start with each pass and end when it is exhausted or its iterator is
  dropped or closed. pin_memory, pin_memory_device, multiprocessing_context and persistent_workers are accepted and
  have no effect (no processes, no pinned memory); batches always come in order."""
  def __init__(self, dataset: Dataset, batch_size: int | None = 1, shuffle: bool | None = None, sampler: Sampler | Iterable | None = None,
               batch_sampler: Sampler | Iterable | None = None, num_workers: int = 0, collate_fn: Callable | None = None,
               pin_memory: bool = False, drop_last: bool = False, timeout: float = 0, worker_init_fn: Callable | None = None,
               multiprocessing_context=None, generator=None, *, prefetch_factor: int | None = None, persistent_workers: bool = False,
               pin_memory_device: str = "", in_order: bool = True):
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
      raise ValueError(f"DataLoader: num_workers should be a non-negative int (0: no worker threads), got num_workers={num_workers!r}")
    if not isinstance(timeout, (int, float)) or timeout < 0: raise ValueError(f"DataLoader: timeout should be non-negative, got timeout={timeout!r}")
    if prefetch_factor is not None and (isinstance(prefetch_factor, bool) or not isinstance(prefetch_factor, int) or prefetch_factor < 0):
      raise ValueError(f"DataLoader: prefetch_factor should be a non-negative int, got prefetch_factor={prefetch_factor!r}")
    if persistent_workers and num_workers == 0: raise ValueError("DataLoader: persistent_workers option needs num_workers > 0")
    iterable = isinstance(dataset, IterableDataset)
    if iterable:
      for name, value in (("shuffle", shuffle), ("sampler", sampler), ("batch_sampler", batch_sampler)):
        if value not in (None, False):
          raise ValueError(f"DataLoader with IterableDataset: expected unspecified {name} option, but got {name}={value!r}")
    if sampler is not None and shuffle: raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
    if batch_sampler is not None:
      if batch_size != 1 or shuffle or sampler is not None or drop_last:
        raise ValueError("DataLoader: batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and drop_last")
      batch_size, drop_last = None, False
    elif batch_size is None:
      if drop_last: raise ValueError("DataLoader: batch_size=None option disables auto-batching and is mutually exclusive with drop_last")
    else: _check_positive_int(batch_size, "batch_size", "DataLoader")
    self.dataset, self.batch_size, self.drop_last, self.num_workers = dataset, batch_size, drop_last, num_workers
    self.generator = _as_generator(generator, "DataLoader")
    if iterable: self.sampler, self.batch_sampler = None, None
    else:
      self.sampler = sampler if sampler is not None else RandomSampler(dataset, generator=self.generator) if shuffle else SequentialSampler(dataset)
      self.batch_sampler = batch_sampler if batch_sampler is not None or batch_size is None else BatchSampler(self.sampler, batch_size, drop_last)
    self._batched = self.batch_sampler is not None or (iterable and batch_size is not None)
    self.collate_fn = collate_fn if collate_fn is not None else default_collate if self._batched else default_convert
    self.prefetch_factor = 2 if prefetch_factor is None else prefetch_factor
    self.timeout, self.worker_init_fn, self.pin_memory, self.pin_memory_device = timeout, worker_init_fn, pin_memory, pin_memory_device
    self.multiprocessing_context, self.persistent_workers, self.in_order = multiprocessing_context, persistent_workers, in_order
    self._threads_ok: bool | None = None  # may worker threads read this dataset: unknown until its first batch is seen
    self._passes = 0  # iterators made so far (the worker threads' seeds differ per pass)

  def __len__(self) -> int:
    if isinstance(self.dataset, IterableDataset):
      n = len(self.dataset)  # type: ignore[arg-type]
      if self.batch_size is None: return n
      return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
    return len(self.batch_sampler if self.batch_sampler is not None else self.sampler)  # type: ignore[arg-type]

  def __iter__(self) -> _LoaderIter:
    self._passes += 1
    return _LoaderIter(self)

def _result(future: concurrent.futures.Future, timeout: float | None):
  """A fetch's result, or its error raised as it was (its own type and message)."""
  try: return future.result(timeout)
  except concurrent.futures.TimeoutError:
    if future.done(): raise  # the dataset's own TimeoutError
    raise RuntimeError(f"DataLoader timed out after {timeout} seconds waiting for a batch") from None
  finally: future = None  # type: ignore[assignment]  # the error's traceback holds this frame: it must not hold the future that holds the error

def _stop(pool: concurrent.futures.ThreadPoolExecutor) -> None:
  """Drop the queued fetches and join the threads (not the one this runs on: a garbage collection may run it there)."""
  pool.shutdown(wait=threading.current_thread() not in getattr(pool, "_threads", ()), cancel_futures=True)

class _LoaderIter:
  """One pass over a DataLoader. A batch is made in two steps: `fetch`, host work (NumPy gathers; a dataset's
  __getitem__ with num_workers > 0) that may run ahead on background threads, then `finish`, which builds lucidgrad
  Tensors and so always runs here, in the consumer's thread. The batch sampler is advanced here too (a RandomSampler
  draws from the global generator)."""
  def __init__(self, loader: DataLoader):
    self._loader, ds, workers = loader, loader.dataset, loader.num_workers
    self._pending: collections.deque[concurrent.futures.Future] = collections.deque()
    self._pool: concurrent.futures.ThreadPoolExecutor | None = None
    self._close: Callable[[], Any] = lambda: None
    self._timeout = loader.timeout or None
    tables = _tables(ds) if loader._batched and loader.collate_fn is default_collate else None
    if isinstance(ds, IterableDataset):
      self._jobs: Iterator = itertools.repeat(None)  # each job reads the next batch from the one shared stream
      self._fetch, threads = _Stream(ds, loader.batch_size, loader.drop_last).fetch, min(workers, 1)
      self._finish_fn = loader.collate_fn
    else:
      self._jobs = iter(loader.batch_sampler if loader.batch_sampler is not None else loader.sampler)  # type: ignore[arg-type]
      if tables is not None: self._fetch, self._finish_fn, threads = tables.fetch, tables.finish, max(workers, 1)
      else: self._fetch, self._finish_fn, threads = lambda job: _fetch_samples(ds, loader._batched, job), loader.collate_fn, workers
    self._threads = threads if loader.prefetch_factor and (tables is not None or loader._threads_ok is not False) else 0
    # the first batch of a dataset not seen yet is read here, to learn whether worker threads may read it
    self._probe = bool(self._threads) and tables is None and loader._threads_ok is None
    if self._threads and not self._probe: self._start()

  def _start(self) -> None:
    loader = self._loader
    seed0 = loader.generator.initial_seed() if isinstance(loader.generator, Generator) else 0
    base_seed = int(np.random.SeedSequence([seed0, loader._passes]).generate_state(1, np.uint64)[0]) >> 2
    ids = itertools.count()
    self._pool = concurrent.futures.ThreadPoolExecutor(self._threads, thread_name_prefix="lucidgrad-data", initializer=_start_worker,
                                                       initargs=(ids, loader.num_workers, base_seed, loader.dataset))
    # the threads end when the pass is exhausted or closed, or this iterator is dropped; the finalizer holds no reference to it
    self._close = weakref.finalize(self, _stop, self._pool)
    self._fill()

  def _fill(self) -> None:
    """Queue jobs until prefetch_factor per thread are running or waiting."""
    while self._pool is not None and len(self._pending) < self._threads * self._loader.prefetch_factor:
      if (job := next(self._jobs, _END)) is _END: break
      self._pending.append(self._pool.submit(_run_in_worker, self._fetch, self._loader.worker_init_fn, job))

  def _finish(self, fetched):
    if fetched is _END:
      self.close()
      raise StopIteration
    return self._finish_fn(fetched)

  def __iter__(self) -> _LoaderIter: return self
  def __len__(self) -> int: return len(self._loader)

  def __next__(self):
    if self._probe:
      self._probe = False
      fetched = self._fetch(next(self._jobs))
      if fetched is not _END:
        if ok := not _holds_tensor(fetched): self._start()
        else: warnings.warn(f"DataLoader: num_workers={self._loader.num_workers} is not used: this dataset returns lucidgrad Tensors, which "
                            "only the iterating thread may build (the graph is not thread-safe); return NumPy arrays or numbers from "
                            "__getitem__ to read it on worker threads", stacklevel=2)
        self._loader._threads_ok = ok
      return self._finish(fetched)
    if self._pool is None: return self._finish(self._fetch(next(self._jobs)))  # no threads: one batch at a time, here
    self._fill()  # keeps the batches after this one in flight while it is waited for and used
    if not self._pending:
      self.close()
      raise StopIteration
    return self._finish(_result(self._pending.popleft(), self._timeout))

  def close(self) -> None:
    """End this pass now: queued batches are dropped and the worker threads joined."""
    self._pending.clear()
    self._jobs = iter(())
    self._close()
