"""A kernel cut into boxes (codegen/split.py: a row of 1000 logits is a body of whole vector blocks and a peeled tail)
sums every box's reduce in the order of the largest box's: outputs computing the same formula on the same inputs round
the same whichever box holds them. Values against NumPy in float64."""
import numpy as np
import pytest
from lucidgrad import Tensor, dtypes

@pytest.mark.parametrize("m, k, n", [(1, 1024, 1000), (1, 4096, 250), (1, 512, 1000)])
def test_tail_columns_of_a_constant_matrix_round_as_the_body(m, k, n):
  """x @ W with every column of W the same: every output column is one sum, bitwise (the peeled tail took no cache
  tile where the body did, and its sums moved by an ulp: ONNX's light nets softmaxed such logits unevenly)."""
  xn = np.random.default_rng(k).random((m, k), dtype=np.float32) * 1000
  y = Tensor(xn) @ Tensor(np.full((n, k), 0.02, np.float32)).T
  got = y.numpy()
  assert y.dtype == dtypes.float32 and got.shape == (m, n)
  np.testing.assert_array_equal(got, np.repeat(got[:, :1], n, axis=1))
  np.testing.assert_allclose(got, xn.astype(np.float64) @ np.full((k, n), 0.02), rtol=1e-5)

def test_boxes_of_a_matmul_with_varying_columns_still_match_numpy():
  rng = np.random.default_rng(1)
  a, b = rng.standard_normal((3, 768)).astype(np.float32), rng.standard_normal((1000, 768)).astype(np.float32)
  np.testing.assert_allclose((Tensor(a) @ Tensor(b).T).numpy(), a.astype(np.float64) @ b.T.astype(np.float64), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose((Tensor(a)[:, ::2] @ Tensor(b).T[::2]).numpy(), a[:, ::2].astype(np.float64) @ b.T[::2].astype(np.float64), rtol=1e-4, atol=1e-4)
