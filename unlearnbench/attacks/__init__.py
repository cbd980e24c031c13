"""Attacks on unlearned models, one file each; importing this package registers every one of them."""

import importlib
import pkgutil

from unlearnbench.attacks import base  # noqa: F401 - the base module first, then every member

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
