"""Progress bars: tqdm on stderr, drawn only where a person watches it.

Off when stderr is not a terminal (a log file, CI, a pipe: no lines of carriage returns there) and in Ray
workers (``TQDM_DISABLE=1``, executors.py: the driver's bar counts their units). ``delay``: a bar appears
only once its work has taken that many seconds, so quick inner loops (a search's trials on a small model)
print nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from tqdm.auto import tqdm


def enabled() -> bool:
    """Whether bars are drawn here: stderr is a terminal and TQDM_DISABLE is not set."""
    if os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes"):
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def bar(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on stderr, disabled where ``enabled()`` is False; inner bars (``leave``
    False by default) vanish when done, so the run's own bar over units stays the one line left."""
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=not enabled(), **kwargs)
