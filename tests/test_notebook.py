"""The Colab notebook runs end to end on the CPU with a tiny configuration."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "analysis" / "colab.ipynb"
TINY = "SEEDS = 4\nWIDTH = 16\nDEPTH = 4\nGAINS = [1.0, 2 ** 0.5]"


@pytest.mark.slow
def test_notebook_runs_on_cpu(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(TINY))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert (tmp_path / "colab.zarr").exists()
    assert "## Points the data cannot support" in (tmp_path / "colab_report" / "report.md").read_text()
