"""The package's shape: configuration without JAX, no import cycle, one module for random draws."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sweep"

NO_JAX = """
import sys

class NoJax:
    def find_spec(self, name, path=None, target=None):
        if name == "jax" or name.startswith(("jax.", "jaxlib", "flax", "optax")):
            raise ImportError(f"{name} is unimportable in this test")

sys.meta_path.insert(0, NoJax())
import sweep, sweep.config, sweep.io.schema
spec = sweep.load_spec(sys.argv[1])
assert type(spec).__name__ == "Spec" and sweep.load_spec({"kind": "train"}).kind == "train"
sweep.io.schema.template(spec)
assert sweep.config.activations.get("leaky_relu").name == "leaky_relu(0.01)"
assert sweep.config.inits.get("fan_avg_truncated").distribution == "truncated_normal"
assert not any(m == "jax" or m.startswith("jax.") for m in sys.modules)
"""


def test_specs_registries_and_the_schema_import_without_jax():
    quick = PACKAGE.parent / "analysis" / "specs" / "quick.toml"
    done = subprocess.run([sys.executable, "-c", NO_JAX, str(quick)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports, at the top or inside functions."""
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_no_module_of_the_package_imports_itself_through_others():
    known = modules()
    graph = {name: imports(name, path, set(known)) for name, path in known.items()}
    # Importing a module runs its packages' __init__ first; those re-export, so count only
    # edges between modules, not into a package from its own submodules.
    graph = {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_only_the_streams_module_draws_random_numbers():
    users = sorted(str(path.relative_to(PACKAGE.parent)) for path in PACKAGE.rglob("*.py")
                   if any(isinstance(node, ast.Attribute) and node.attr == "random"
                          and isinstance(node.value, ast.Name) and node.value.id == "jax"
                          for node in ast.walk(ast.parse(path.read_text()))))
    assert users == ["sweep/model/streams.py"]

