"""A conv's three CPU forms side by side (docs/design/0020, addendum; 0040): the outer product (output channels the
vector, weight stored (*kernel, Cin, Cout)), the dot product (input channels the vector, weight (Cout, *kernel, Cin))
and a matmul over an explicit im2col copy (the weight as (Cout, *kernel x Cin)), in one process, interleaved, best of 6, the layout copies included. Interleaving is what makes the two comparable on a
machine whose neighbours' load moves every figure by tens of percent.
  python bench/bench_conv_forms.py"""
import time
import numpy as np
from lucidgrad import Tensor
import lucidgrad.tensor_nn as tn

SHAPES = [  # batch, Cin, input size, Cout, padding, stride
  (16, 64, 56, 64, 1, 1), (16, 128, 28, 128, 1, 1), (16, 64, 56, 128, 1, 2), (128, 32, 26, 64, 0, 1),
  (128, 64, 28, 32, 0, 1), (16, 128, 14, 128, 1, 1), (16, 256, 14, 256, 1, 1), (16, 128, 10, 128, 1, 1), (16, 256, 8, 256, 1, 1),
  (16, 256, 7, 256, 1, 1), (16, 512, 4, 512, 1, 1), (16, 512, 7, 512, 1, 1), (16, 256, 14, 512, 1, 2)]
FORMS = {"outer product": (8, 1, 10**9), "dot product": (10**9, 1, 10**9), "im2col": (8, 1, 1)}  # (CO_VECTOR_MIN, CO_VECTOR_MIN_WIDTH, IM2COL_MIN_OUT)

def one_call(xn: np.ndarray, w: Tensor, pad: int, stride: int, i: int) -> float:
  x = Tensor(xn + i).realize()  # a new input each call: a repeated graph's value would be remembered
  y = x.conv2d(w, padding=pad, stride=stride)
  st = time.perf_counter()
  y.realize()
  return time.perf_counter() - st

def main():
  rng = np.random.default_rng(0)
  keep = (tn.CO_VECTOR_MIN, tn.CO_VECTOR_MIN_WIDTH, tn.IM2COL_MIN_OUT, tn.IM2COL_MAX_BYTES)
  tn.IM2COL_MAX_BYTES = 1 << 40  # the im2col form for every shape here, whatever its copy's size
  try:
    for B, C, H, Co, pad, stride in SHAPES:
      xn, w = rng.standard_normal((B, C, H, H), np.float32), Tensor(rng.standard_normal((Co, C, 3, 3), np.float32)).realize()
      best = {f: float("inf") for f in FORMS}
      for rep in range(7):  # the first call of each form compiles
        for f, form in FORMS.items():
          tn.CO_VECTOR_MIN, tn.CO_VECTOR_MIN_WIDTH, tn.IM2COL_MIN_OUT = form
          t = one_call(xn, w, pad, stride, rep)
          if rep: best[f] = min(best[f], t)
      OH = (H + 2 * pad - 3) // stride + 1
      flops = 2 * B * Co * C * 9 * OH * OH
      print(f"conv {B}x{C}x{H}² -> {Co}, pad {pad}, stride {stride}: " + ", ".join(f"{f} {flops / t / 1e9:.0f} GFLOP/s" for f, t in best.items()), flush=True)
  finally: tn.CO_VECTOR_MIN, tn.CO_VECTOR_MIN_WIDTH, tn.IM2COL_MIN_OUT, tn.IM2COL_MAX_BYTES = keep

if __name__ == "__main__": main()
