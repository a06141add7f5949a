"""Utilities named as torch.utils's: `lucidgrad.utils.data` holds datasets, samplers and the DataLoader."""
from lucidgrad.utils import data

__all__ = ["data"]
