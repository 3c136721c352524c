"""The package layout: no import cycles inside ropd_kit, the method's stages import no measurement code, and
nothing but the method at the first level.

In-memory, no network: reads the source with `ast`, imports nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "ropd_kit"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PKG.rglob("*.py"):
        name = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _import_graph() -> dict[str, set[str]]:
    """Module -> the ropd_kit modules it imports anywhere in its body (lazy imports inside functions count too:
    they close the same cycle at run time). A package and its own submodules are not edges of each other."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                if target in mods and target != mod and not target.startswith(mod + ".") \
                        and not mod.startswith(target + "."):
                    graph[mod].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_ropd_kit():
    graph = _import_graph()
    assert "ropd_kit.train.methods" in graph and graph["ropd_kit.train.methods"], "the graph reads the imports"
    assert _cycles(graph) == []


# The method's stages (DESIGN.md's layout): the modules training runs, levers included. Measurement (fidelity/,
# bench/) may import them, never the other way round: what the study measures must be the method as it runs.
STAGES = ("data", "sources", "config", "llm", "limits", "teacher", "rollouts", "rubrics", "verify", "judge_text",
          "levers", "consensus", "scoring", "answers", "reward", "pipeline", "prompts", "train")
MEASUREMENT = ("ropd_kit.fidelity", "ropd_kit.bench")


def test_stages_import_neither_fidelity_nor_bench():
    graph = _import_graph()
    stages = [m for m in graph if m.count(".") >= 1 and m.split(".")[1] in STAGES]
    assert {"ropd_kit.consensus", "ropd_kit.levers", "ropd_kit.verify", "ropd_kit.train.methods"} <= set(stages)
    # the graph sees an edge from measurement to a stage, so an edge the other way would be seen too
    assert "ropd_kit.consensus" in graph["ropd_kit.fidelity.criteria"]
    reaching = {m: sorted(t for t in graph[m] if t.startswith(MEASUREMENT)) for m in stages}
    assert {m: targets for m, targets in reaching.items() if targets} == {}


def test_first_level_holds_no_benchmark_or_fault_injection_module():
    first_level = {p.stem for p in PKG.glob("*.py")}
    assert not {name for name in first_level if name.startswith("bench") or "fault" in name}
    assert (PKG / "bench" / "faultproxy.py").is_file() and (PKG / "bench" / "__main__.py").is_file()


def test_reports_folder_is_in_the_repo():
    assert (PKG.parent / "reports" / "README.md").is_file()
