"""grain's DataLoader reads absl flags; outside an absl app they must count as parsed."""

from absl import flags

flags.FLAGS.mark_as_parsed()
