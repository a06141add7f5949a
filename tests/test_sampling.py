"""Token sampling (lucidgrad/llm/sampling.py) against NumPy: greedy, the penalty, and the distributions of
temperature, top-k and top-p draws (many rows drawn at once, frequencies against the renormalised softmax)."""
import numpy as np
import pytest
from lucidgrad import Tensor
from lucidgrad.llm.sampling import Sampling, sample

LOGITS = np.array([2.0, 1.0, 0.5, -1.0, 0.0, 1.5], np.float32)

def softmax(x): e = np.exp(x - x.max()); return e / e.sum()

def frequencies(how: Sampling, n: int = 20000, seed: int = 0) -> np.ndarray:
  Tensor.manual_seed(seed)
  ids = sample(Tensor(np.tile(LOGITS, (n, 1))), how).numpy()
  assert ids.dtype == np.int32 and ids.shape == (n,)
  return np.bincount(ids, minlength=len(LOGITS)) / n

def test_greedy_is_the_argmax_and_the_penalty_is_ctrls():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((3, 50)).astype(np.float32)
  np.testing.assert_array_equal(sample(Tensor(x)).numpy(), x.argmax(-1))
  seen = rng.random((3, 50)) < 0.3
  pen = np.where(seen, np.where(x > 0, x / 1.7, x * 1.7), x)
  np.testing.assert_array_equal(sample(Tensor(x), Sampling(repetition_penalty=1.7), Tensor(seen)).numpy(), pen.argmax(-1))

@pytest.mark.parametrize("how,keep", [(Sampling(temperature=1.0), None), (Sampling(temperature=0.5), None),
                                      (Sampling(temperature=1.0, top_k=3), [0, 5, 1]), (Sampling(temperature=1.0, top_p=0.6), [0, 5])])
def test_draws_follow_the_renormalised_softmax(how, keep):
  p = softmax(LOGITS.astype(np.float64) / how.temperature)
  if keep is not None:
    mask = np.zeros_like(p); mask[keep] = 1; p = p * mask / (p * mask).sum()
  f = frequencies(how)
  np.testing.assert_allclose(f, p, atol=0.012)  # 20000 draws: a standard error below 0.0036 per token
  if keep is not None: assert f[[i for i in range(len(p)) if i not in keep]].sum() == 0

def test_top_p_keeps_the_token_that_crosses_the_mass():
  # softmax of LOGITS: 0.41, 0.25 (index 5), 0.15, ...: top_p 0.41 keeps only index 0, a hair more keeps index 5 too
  assert set(np.nonzero(frequencies(Sampling(temperature=1.0, top_p=0.4), 2000))[0]) == {0}
  assert set(np.nonzero(frequencies(Sampling(temperature=1.0, top_p=0.45), 4000))[0]) == {0, 5}

def test_bad_settings_raise():
  with pytest.raises(ValueError, match="temperature must be >= 0"): Sampling(temperature=-1)
  with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"): Sampling(top_p=0)
  with pytest.raises(ValueError, match="top_k must be >= 0"): Sampling(top_k=-2)
  with pytest.raises(ValueError, match=r"logits must be \(batch, vocab\), got shape \(6,\)"): sample(Tensor(LOGITS))
