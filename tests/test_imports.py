"""The package's modules import one another without cycles, counting imports inside functions too (a cycle
hidden in a function still ties two modules together: each needs the other to be understood or moved)."""

from graphlib import CycleError, TopologicalSorter

from unlearnbench.identity import PACKAGE_ROOT, imported_package_modules


def package_modules() -> dict[str, str]:
    modules = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
        modules[".".join(parts).removesuffix(".__init__")] = str(path)
    return modules


def test_no_module_of_the_package_imports_itself_back():
    modules = package_modules()
    # Imported names ("unlearnbench.runner.run") are not modules: keep the edges between modules.
    graph = {name: {m for m in imported_package_modules(path, name) if m in modules and m != name}
             for name, path in modules.items()}
    assert {"unlearnbench.runner", "unlearnbench.executors", "unlearnbench.models.shipped"} <= set(graph)
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None
