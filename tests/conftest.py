"""Test-session set-up, imported by pytest before any test module (and so before JAX starts).

* grain's DataLoader reads absl flags; outside an absl app they must count as parsed.
* XLA's CPU backend compiles at optimization level 0 and without its fusion emitters: the tests
  run tiny shapes, where compiling dominates the time (BENCHMARKS.md, "Test suite time"); the
  micro NTM train step compiles in 4.5 s instead of 11.9 s without the emitters and runs as
  fast. Every numerical check holds at the tolerance it states. Production runs keep XLA's
  defaults.
* JAX's persistent compilation cache for every compile, in one directory shared by the xdist
  workers and the subprocesses the tests start (through the environment): what one process
  compiled, another loads. Entries are keyed by the program, JAX version and flags, so a stale
  one is never used.
* Python's garbage collector is tuned for tracing: JAX builds many short-lived objects per trace,
  and with the default thresholds every full collection walks the whole imported stack. The
  modules are frozen out of collection after import and collections run less often: 5-10% off
  tracing-heavy tests (tests/test_ntm.py + tests/test_distill.py on one core, cold cache: 111-120 s
  before, 105-106 s after).
* One Runtime per (config, devices) in each test process. A Runtime never changes after
  runtime.build and keeps its jitted programs, so a test that restores a run another test
  trained (or restores it several times: the score, sample and grey-data tests) reuses traced
  programs instead of tracing and lowering them again, which is most of the suite's time
  (BENCHMARKS.md, "Test suite time"). It is built from a private copy of the config, so a test
  that edits its config afterwards cannot change another test's runtime.
"""

import gc
import os
import tempfile

from absl import flags

for _flag in ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"):
  if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "ntm_jax_test_compilation_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # at level 0 most
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")  # compiles take < 1 s

flags.FLAGS.mark_as_parsed()


def _share_runtimes():
  import copy  # pylint: disable=g-import-not-at-top
  from ntm_jax.runtime import runtime  # pylint: disable=g-import-not-at-top
  build, built = runtime.build, {}

  def shared(config, devices=None, check_memory: bool = True):
    key = (config.to_json_best_effort(sort_keys=True),
           None if devices is None else tuple(d.id for d in devices), check_memory)
    if key not in built:
      built[key] = build(copy.deepcopy(config), devices, check_memory)
    return built[key]
  runtime.build = shared


_share_runtimes()


# The slowest modules (2 workers, idle: the two-process module 138 s alone; test_train, the
# ablation options, latents, preemption, bench, notebook and flow matching 50-150 s each;
# BENCHMARKS.md, "Test suite time"), scheduled first. With --dist loadscope a module runs whole
# on one worker, and xdist's default order (most tests first) started the one-test two-process
# module last, where it alone set the wall time.
SLOWEST_FIRST = ("test_multihost.py", "test_train.py", "test_ablation_options.py",
                 "test_latents.py", "test_preemption.py", "test_bench.py", "test_notebook.py",
                 "test_flow_matching.py")


def pytest_configure(config):
  if hasattr(config.option, "loadscopereorder"):  # pytest-xdist is loaded
    config.option.loadscopereorder = False  # keep the order below


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: modules stay whole


def pytest_collection_finish(session):  # pylint: disable=unused-argument
  gc.collect()
  gc.freeze()  # everything imported so far lives as long as the session
  gc.set_threshold(100_000, 50, 1_000)
