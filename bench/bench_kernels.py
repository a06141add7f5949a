"""Where one step of a suite model spends its time, kernel by kernel: the model's call run twice (compiles, caches),
then once under PROFILE=1, its events summed by kernel name, slowest first, with GFLOP/s and GB/s.

  python bench/bench_kernels.py resnet18_forward [--res 112] [--top 30]
  python bench/bench_kernels.py mnist_example | gpt2_forward | resnet18_train | mainjob
"""
from __future__ import annotations
import argparse, collections, os, pathlib, sys, time
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
os.environ.setdefault("PROFILE", "1")

def main():
  import bench_suite as bs
  from lucidgrad.engine import profile
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("model", choices=sorted(bs.SETUPS))
  ap.add_argument("--res", type=int, default=112, help="ResNet-18 input resolution")
  ap.add_argument("--top", type=int, default=30, help="kernels listed")
  args = ap.parse_args()
  _, call = bs.SETUPS[args.model](bs.sizes(False, args.res))
  for _ in range(2): call()
  profile.take_events()
  st = time.perf_counter(); call(); wall = time.perf_counter() - st
  events = profile.take_events()
  by_name: dict[str, list] = collections.defaultdict(lambda: [0, 0.0, 0, 0])
  for e in events:
    a = by_name[e.name]
    a[0] += 1; a[1] += e.duration; a[2] += e.flops; a[3] += e.mem_bytes
  total = sum(a[1] for a in by_name.values())
  print(f"{args.model}: wall {wall * 1e3:.1f} ms, {len(events)} kernels, {total * 1e3:.1f} ms in kernels")
  for name, (n, d, f, m) in sorted(by_name.items(), key=lambda kv: -kv[1][1])[:args.top]:
    print(f"{d * 1e3:9.2f} ms {100 * d / total:5.1f}% x{n:<4} {f / d / 1e9 if d else 0:7.1f} GFLOP/s {m / d / 1e9 if d else 0:7.1f} GB/s  {name}")

if __name__ == "__main__": main()
