"""One file per device: how to allocate, compile and run there. Each module exposes make_device(name)."""
