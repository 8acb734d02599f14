"""Resident memory of one process that samples a trained run repeatedly through the Python API
(evaluate/sample.py), as a notebook or a service would: it must not grow call after call.

  python bench/sampling_memory.py --config=t2i --preset=micro --workdir=DIR [--calls=10]

Prints one JSON object: RSS after each call (MiB), and the growth from the second call to the
last (the first call compiles).
"""

import gc

import psutil

import cli  # bench/cli.py
from ntm_jax.evaluate import sample as sample_lib


def main():
  parser = cli.trained_run_parser(__doc__, preset="micro")
  parser.add_argument("--calls", type=int, default=10)
  args = parser.parse_args()
  cli.quiet()
  config = cli.get_config(args.config, args.preset, args.set)
  process = psutil.Process()
  rss = []
  for _ in range(args.calls):
    sample_lib.sample(config, args.workdir)
    gc.collect()
    rss.append(process.memory_info().rss / 2**20)
  cli.print_json("sampling_memory", {
      "preset": args.preset, "calls": args.calls, "rss_mib": [round(r, 1) for r in rss],
      "growth_after_first_call_mib": round(rss[-1] - rss[0], 1)})


if __name__ == "__main__":
  main()
