"""What training and evaluation share: the device mesh and shardings, the train state, the
jitted programs of a model (and of its distilled denoiser), and checkpoint save and restore."""
