"""The package's layers (docs/architecture.md): a module imports only from its own layer or the
ones below, and train/ and evaluate/ never import each other. Checked on the source, every
import statement included (also those inside functions)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "ntm_jax"

# Lowest first. Core: the models, their maths, the data, files, text; methods: what each
# training method is; runtime: mesh, state, jitted programs, checkpoints; then the two modes.
LAYERS = {"core": 0, "methods": 1, "runtime": 2, "evaluate": 3, "train": 3, "main": 4}


def layer_of(module: str) -> str:
  """'ntm_jax.runtime.state' -> 'runtime'; core modules (ntm_jax.ntm, ntm_jax.data.*) -> core."""
  parts = module.split(".")
  if len(parts) > 1 and parts[1] in LAYERS:
    return parts[1]
  return "core"


def package_modules():
  for path in sorted(PACKAGE.rglob("*.py")):
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    yield ".".join(p for p in relative.parts if p != "__init__"), path


def imported_modules(path: pathlib.Path) -> set:
  names = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return {n for n in names if n.startswith("ntm_jax.")}


def forbidden_imports() -> list:
  found = []
  for module, path in package_modules():
    mine = layer_of(module)
    for imported in imported_modules(path):
      theirs = layer_of(imported)
      sideways = {mine, theirs} == {"train", "evaluate"}
      if LAYERS[theirs] > LAYERS[mine] or sideways:
        found.append(f"{module} ({mine}) imports {imported} ({theirs})")
  return found


def test_no_module_imports_a_layer_above_its_own():
  assert forbidden_imports() == []


def test_the_check_sees_a_forbidden_import(tmp_path, monkeypatch):
  rogue = PACKAGE / "evaluate" / "_rogue_for_test.py"
  monkeypatch.setattr(pathlib.Path, "rglob", lambda self, pattern: [rogue])
  monkeypatch.setattr(pathlib.Path, "read_text",
                      lambda self, encoding=None: "from ntm_jax.train import loop\n")
  assert forbidden_imports() == [
      "ntm_jax.evaluate._rogue_for_test (evaluate) imports ntm_jax.train.loop (train)"]


@pytest.mark.parametrize("module,layer", [("ntm_jax.ntm", "core"), ("ntm_jax.data.shapes", "core"),
                                          ("ntm_jax.methods.sampling", "methods"),
                                          ("ntm_jax.runtime", "runtime"), ("ntm_jax.main", "main")])
def test_layer_of(module, layer):
  assert layer_of(module) == layer
