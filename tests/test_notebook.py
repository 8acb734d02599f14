"""notebooks/colab_tpu.ipynb executes end to end on CPU at the micro preset, as on Colab."""

import os

import nbclient
import nbformat
import pytest

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "notebooks")


@pytest.mark.notebook
def test_colab_notebook_runs_at_micro(tmp_path, monkeypatch):
  path = os.path.join(NOTEBOOKS, "colab_tpu.ipynb")
  notebook = nbformat.read(path, as_version=4)
  assert not any(cell.get("outputs") for cell in notebook.cells), "commit it without outputs"
  monkeypatch.setenv("NTM_NOTEBOOK_SIZE", "micro")
  monkeypatch.setenv("NTM_NOTEBOOK_WORKDIR", str(tmp_path / "workdir"))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": NOTEBOOKS}}).execute()
  outputs = [out for cell in notebook.cells for out in cell.get("outputs", [])]
  text = "".join(out.get("text", "") for out in outputs)
  assert "backend: cpu" in text and "nats/dim" in text and "bits/dim" in text
  images = [out for out in outputs if "image/png" in out.get("data", {})]
  assert len(images) == 2  # the full-NF grid and the fast sampler's grid
  assert os.path.exists(tmp_path / "workdir" / "distill" / "checkpoints")
