"""A check run in a forked child: what a fork inherits (the parent's thread pools, caches and queues, but not its
threads) is what these checks are about."""
import os, signal

def true_in_a_fork(check, seconds: int = 120) -> bool:
  """check() in a forked child: True where it returned something true there. A child that raises, or still runs after
  `seconds` (a pool waiting for threads that do not exist in it), counts as False instead of failing or hanging."""
  if (pid := os.fork()) == 0:
    signal.alarm(seconds)
    try: ok = bool(check())
    except BaseException: ok = False
    os._exit(0 if ok else 1)
  _, status = os.waitpid(pid, 0)
  return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
