"""Issue 13's language-model rows: SmolLM2-135M-Instruct (Q4_1 GGUF) on this machine's CPU, lucidgrad beside llama.cpp
(llama-cpp-python, when installed) in the same run.
  python bench/bench_llm.py [--decode N] [--prefill N]
Prefill: N prompt tokens through the model from an empty cache, as generate runs them (jitted chunks of 32 tokens at a
bound position), tokens/s (the best of a few runs after the first, which builds the kernels).
Decode: ms a token with a warm cache (the mean over N tokens after a short warm-up), one token at a time.
--kernels: also each kernel class of the decode step, timed one kernel at a time on one thread in the step's order
(its weights come from memory, as in the step) by the thread's CPU clock, so other jobs on the machine barely count
(docs/design/0033): where the step's time goes when the wall clock is too noisy to tell."""
import argparse, collections, ctypes, os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from lucidgrad import GlobalCounters
from lucidgrad.llm.fetch import smollm2_gguf
from lucidgrad.llm.llama import Llama
from lucidgrad.llm.sampling import prefill, PREFILL_CHUNK, Sampling

def lucidgrad_rows(path, n_prefill: int, n_decode: int, kernels: bool = False) -> dict:
  model, _ = Llama.from_gguf(path, max_context=max(512, n_prefill + n_decode + 16))
  prompt = [(i * 7919) % 40000 + 100 for i in range(n_prefill)]
  # generate's prefill: jitted chunks of PREFILL_CHUNK tokens at a bound position; the first call builds the kernels
  st = time.perf_counter(); prefill(model, prompt).argmax(-1).item(); first = time.perf_counter() - st
  best = min(_timed(lambda: prefill(model, prompt).argmax(-1).item()) for _ in range(3))
  step = model.decoder(n_prefill)  # one token at a time from the prompt's end (jitted where the model can)
  token = 42
  for _ in range(3): token = step(token)
  GlobalCounters.reset()
  compiles, schedules = GlobalCounters.compiles, GlobalCounters.schedules_built  # build counters survive reset()
  st = time.perf_counter()
  for _ in range(n_decode): token = step(token)
  per = (time.perf_counter() - st) / n_decode
  classes = kernel_classes(model._jits[("decode", Sampling())].items) if kernels else None
  return {"prefill_tps": n_prefill / best, "prefill_first_s": first, "decode_ms": per * 1e3, "kernels": classes,
          "decode_kernels": GlobalCounters.kernel_count / n_decode,
          "decode_compiles": GlobalCounters.compiles - compiles, "decode_schedules": GlobalCounters.schedules_built - schedules}

def kernel_classes(items, rounds: int = 3) -> list[tuple[str, int, float]]:
  """(kernel name, count, seconds) of a captured step, heaviest first: each kernel run alone, all its thread shares on
  this thread, in the step's order, timed by this thread's CPU clock; the best of `rounds` steps per kernel."""
  from lucidgrad.engine.realize import var_value_named
  calls = []
  for ei in items:
    r = ei.runner
    args = [ei.bufs[i].raw.arg for i in r.slots] + [ctypes.c_void_p(var_value_named(n)) for n in r.vars]
    calls.append((r.name, r.program.fxn, args, r.program.spec.threads))
  best = [float("inf")] * len(calls)
  for _ in range(rounds):
    for i, (_, fxn, args, n) in enumerate(calls):
      st = time.thread_time()
      for c in range(n): fxn(*args, ctypes.c_int(c), ctypes.c_int(n))
      best[i] = min(best[i], time.thread_time() - st)
  by: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])
  for (name, *_), t in zip(calls, best): by[name][0] += 1; by[name][1] += t
  return sorted(((name, n, t) for name, (n, t) in by.items()), key=lambda x: -x[2])

def llamacpp_rows(path, n_prefill: int, n_decode: int) -> dict | str:
  try: import llama_cpp
  except ImportError: return "llama-cpp-python not installed"
  llm = llama_cpp.Llama(str(path), n_ctx=max(512, n_prefill + n_decode + 16), n_threads=os.cpu_count(), n_batch=512, verbose=False)
  prompt = [(i * 7919) % 40000 + 100 for i in range(n_prefill)]
  def prefill():
    llm.reset(); llm.eval(prompt)
  best = min(_timed(prefill) for _ in range(3))
  token = 42
  for _ in range(3): llm.eval([token])
  st = time.perf_counter()
  for _ in range(n_decode): llm.eval([token])
  return {"prefill_tps": n_prefill / best, "decode_ms": (time.perf_counter() - st) / n_decode * 1e3}

def _timed(fn) -> float:
  st = time.perf_counter(); fn(); return time.perf_counter() - st

def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--prefill", type=int, default=128)
  ap.add_argument("--decode", type=int, default=32)
  ap.add_argument("--kernels", action="store_true", help="each kernel class's single-thread CPU time in a decode step")
  args = ap.parse_args()
  path = smollm2_gguf()
  ours = lucidgrad_rows(path, args.prefill, args.decode, args.kernels)
  peer = llamacpp_rows(path, args.prefill, args.decode)
  print("| row | lucidgrad | llama.cpp | ratio |\n|---|---|---|---|")
  p = peer if isinstance(peer, dict) else {}
  fmt = lambda v, f: f.format(v) if v is not None else "-"
  ratio = lambda a, b: f"{a / b:.2f}x" if a and b else (peer if isinstance(peer, str) else "-")
  print(f"| prefill {args.prefill} tokens (jitted chunks of {PREFILL_CHUNK}) | {ours['prefill_tps']:.0f} tokens/s (first call {ours['prefill_first_s']:.1f} s) | "
        f"{fmt(p.get('prefill_tps'), '{:.0f} tokens/s')} | {ratio(ours['prefill_tps'], p.get('prefill_tps'))} |")
  print(f"| decode, warm cache (one jitted step replayed as one CPU graph) | {ours['decode_ms']:.1f} ms/token ({ours['decode_kernels']:.0f} kernels; "
        f"{ours['decode_compiles']} compiles, {ours['decode_schedules']} schedules) | {fmt(p.get('decode_ms'), '{:.1f} ms/token')} | "
        f"{ratio(p.get('decode_ms'), ours['decode_ms'])} |")

  if ours["kernels"]:
    total = sum(t for _, _, t in ours["kernels"])
    print(f"\ndecode step, one thread, CPU time per kernel class (sum {total * 1e3:.2f} ms)")
    for name, n, t in ours["kernels"]: print(f"  {name:28s} x{n:4d} {t * 1e3:8.3f} ms")

if __name__ == "__main__":
  main()
