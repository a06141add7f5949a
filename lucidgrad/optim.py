"""torch.optim's place: `lucidgrad.optim` is `lucidgrad.nn.optim` (either import gives the one module, and
`lucidgrad.optim.lr_scheduler` its schedulers), so `import torch.optim as optim` ports by its first word."""
import sys
from lucidgrad.nn import optim as _optim
sys.modules[__name__] = _optim
sys.modules[f"{__name__}.lr_scheduler"] = _optim.lr_scheduler
