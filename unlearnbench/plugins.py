"""``--plugin``: the user's modules that register their own methods or suites (docs/PLUGINS.md).

A plugin is named as a module (``examples.my_method``, importable from the Python path or from the
current folder, as ``python -m`` would find it) or as the path of a ``.py`` file (``examples/my_method.py``,
``~/work/mine.py``). A file is imported under its dotted name: inside a package (folders with
``__init__.py``) the name starts at the package's top folder, whose parent goes on the Python path, so
the plugin's own relative imports and helper modules beside it import as they would in a project.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from unlearnbench.errors import UnlearnBenchError

# Folders this process put on sys.path for plugins; Ray workers get them too (executors.py).
PATHS: list[str] = []


def load_plugins(specs: list[str] | None) -> None:
    """Import the built-in methods, suites and attacks, then the user's plugins (which register their own)."""
    import unlearnbench.attacks  # noqa: F401
    import unlearnbench.benchmarks  # noqa: F401
    import unlearnbench.methods  # noqa: F401

    for spec in specs or []:
        import_plugin(spec)


def import_plugin(spec: str) -> str:
    """Import the plugin ``spec`` (a module name or a ``.py`` file); returns its module name."""
    is_file = spec.endswith(".py") or "/" in spec or os.sep in spec
    if is_file:
        name, folder = file_module(spec)
        add_path(folder, first=True)  # the file named, and the helper modules beside it, over same-named others
    else:
        name = spec
        add_path(os.getcwd(), first=False)  # `python -m` finds modules in the current folder; bench.py does too
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and (name == err.name or name.startswith(err.name + ".")):
            raise UnlearnBenchError(
                f"--plugin {spec}: no module {err.name!r} on the Python path or in the current folder {os.getcwd()}; "
                "give an importable module name (e.g. examples.my_method, from the repository root) or the path "
                "of its .py file (e.g. examples/my_method.py)") from None
        raise UnlearnBenchError(f"--plugin {spec}: importing it failed: {err} (the plugin imports a module that is "
                                "not installed here)") from None
    except ImportError as err:
        raise UnlearnBenchError(f"--plugin {spec}: cannot import it ({err})") from None
    if is_file and Path(module.__file__ or "").resolve() != Path(spec).expanduser().resolve():
        raise UnlearnBenchError(f"--plugin {spec}: the module {name!r} imported from {module.__file__} instead; "
                                "rename the plugin file")
    return name


def file_module(spec: str) -> tuple[str, str]:
    """The dotted module name of the ``.py`` file ``spec`` and the folder it imports from."""
    path = Path(spec).expanduser()
    if path.suffix != ".py" or not path.is_file():
        what = "no such file" if not path.exists() else "not a .py file"
        raise UnlearnBenchError(f"--plugin {spec}: {what}; give the path of a Python file (e.g. "
                                "examples/my_method.py) or an importable module name (e.g. examples.my_method)")
    path = path.resolve()
    parts, folder = [path.stem], path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    name = ".".join(parts)
    loaded = sys.modules.get(name)
    source = getattr(loaded, "__file__", None)
    if source and Path(source).resolve() != path:
        raise UnlearnBenchError(f"--plugin {spec}: a module named {name!r} is already imported from {source}; "
                                "rename the plugin file")
    return name, str(folder)


def add_path(folder: str, first: bool) -> None:
    if folder not in sys.path:
        if first:
            sys.path.insert(0, folder)
        else:  # after the installed packages: the current folder never shadows a library
            sys.path.append(folder)
    if folder not in PATHS:
        PATHS.append(folder)
