"""The line each bench ends with: the slowest kernel build of this process (codegen + C compiler, in seconds of wall
clock), so every bench log shows what its kernels cost to compile. A kernel read from the disk cache costs nothing:
run with an empty $CACHEDIR (CACHEDIR=$(mktemp -d)) for a cold start's figure."""
from lucidgrad import GlobalCounters

def print_slowest_compile() -> None:
  name, secs = GlobalCounters.slowest_compile
  if not name: print("slowest kernel compile: none (every kernel came from the caches)")
  else: print(f"slowest kernel compile: {name} {secs:.2f} s (of {GlobalCounters.codegen_passes} codegen passes and {GlobalCounters.compiles} compiles)")
