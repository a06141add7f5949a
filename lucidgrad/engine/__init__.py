"""Running ExecItems: kernels and copies, timed and counted; later the JIT that captures and replays them."""
