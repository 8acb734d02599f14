"""Config files (configs/*.py) are loaded by path, not as a package: one that builds on another
loads its sibling with `sibling(__file__, "t2i")`. Scripts override their values with
`apply_overrides`."""

import ast
import importlib.util
import os


def sibling(config_file: str, name: str):
  """The module `name`.py in the directory of config_file."""
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"configs_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def apply_overrides(config, items):
  """KEY=VALUE overrides (values as Python literals, else strings), applied in place."""
  for item in items:
    key, value = item.split("=", 1)
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass  # a plain string
    config.update_from_flattened_dict({key: value})
  return config
