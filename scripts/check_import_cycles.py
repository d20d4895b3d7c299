"""Fail when any module of twins_nas imports itself back through other modules.

import-linter's contracts (pyproject.toml) check cycles between siblings and the one-way
layers; this check covers every module, packages' `__init__` included, and every import
statement, those inside functions too (grimp reads them all). Prints each cycle found."""
from __future__ import annotations

import sys

import grimp


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm over the module graph: the groups of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(root: str) -> None:  # iterative, so deep chains cannot hit the recursion limit
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        group.append(m)
                        if m == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def main(package: str = "twins_nas") -> int:
    graph = grimp.build_graph(package, cache_dir=None)
    cycles = strongly_connected(graph)
    for group in cycles:
        print(f"import cycle: {' <-> '.join(group)}")
    if not cycles:
        print(f"no import cycles among the {len(graph.modules)} modules of {package}")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
