#!/usr/bin/env python3
"""Fails when the runtime crate's top-level modules import each other in a circle.

A module is a file or folder directly under runtime/src; an edge A → B is a `crate::B` path in code
(not in comments) of A's files. The store must stay below the HTTP and metrics layers: a circle means
a lower layer learned about a higher one.
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
src = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else root / "runtime" / "src"
edges: dict[str, set[str]] = {}
for path in src.rglob("*.rs"):
    rel = path.relative_to(src)
    module = rel.parts[0].removesuffix(".rs")
    if module in ("lib", "main"):
        continue
    for line in path.read_text().splitlines():
        code = line.split("//", 1)[0]
        for target in re.findall(r"\bcrate::([a-z_0-9]+)", code):
            if target != module and ((src / f"{target}.rs").exists() or (src / target).is_dir()):
                edges.setdefault(module, set()).add(target)

cycles = []
state: dict[str, int] = {}
stack: list[str] = []


def visit(m: str) -> None:
    state[m] = 1
    stack.append(m)
    for n in sorted(edges.get(m, ())):
        if state.get(n) == 1:
            cycles.append(stack[stack.index(n):] + [n])
        elif n not in state:
            visit(n)
    stack.pop()
    state[m] = 2


for m in sorted(edges):
    if m not in state:
        visit(m)
if cycles:
    for c in cycles:
        print("runtime/src import circle: " + " → ".join(c))
    sys.exit(1)
print(f"runtime/src modules: no import circle ({sum(len(v) for v in edges.values())} edges)")
