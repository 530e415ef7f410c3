"""The notebook-first example (`docs/examples/mup_width_sweep.ipynb` and `.py`): the two hold the same code, the
notebook runs top to bottom in a Jupyter kernel (nbclient) with functions defined in its cells, and its muP width
sweep shows what it says; the script then finds every job finished and prints the same summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
sys.path.insert(0, str(EXAMPLES))
from sync_notebook import cells_of  # noqa: E402

# The tolerances the docs state (docs/sweeps_and_mlp.md, "Notebooks"): at the 30% loss checkpoint muP's mean
# steps across widths 64-1024 stay within 1.35x of each other, the standard parameterisation's do not (>= 1.5x).
MUP_FLAT, SP_SPREAD = 1.35, 1.5


def _summary(text: str) -> dict:
    line = next(ln for ln in text.splitlines() if ln.startswith("SUMMARY "))
    return json.loads(line[len("SUMMARY ") :])


def test_the_notebook_and_the_script_hold_the_same_code():
    nb = nbformat.read(EXAMPLES / "mup_width_sweep.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in nb.cells] == cells_of((EXAMPLES / "mup_width_sweep.py").read_text())
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    out = tmp_path_factory.mktemp("example")
    nb = nbformat.read(EXAMPLES / "mup_width_sweep.ipynb", as_version=4)
    env_before = os.environ.get("HFE_EXAMPLE_OUT")
    os.environ["HFE_EXAMPLE_OUT"] = str(out)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(out)}}).execute()
    finally:
        if env_before is None:
            os.environ.pop("HFE_EXAMPLE_OUT")
        else:
            os.environ["HFE_EXAMPLE_OUT"] = env_before
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    return out, _summary(text)


@pytest.mark.slow  # the notebook's 30-job width sweep: 70 s idle, 5 min beside other work (the suite's longest)
def test_the_notebook_runs_and_mup_is_flat_across_widths(executed):
    _, summary = executed
    assert summary["mup"]["step_to_rel_loss_0.3"] < MUP_FLAT, summary
    assert summary["standard"]["step_to_rel_loss_0.3"] >= SP_SPREAD, summary
    assert len(summary["readout_norm_final"]) == 30  # the notebook's own grab, one value per job


@pytest.mark.slow  # needs the executed notebook above
def test_the_script_reruns_nothing_and_prints_the_same_summary(executed):
    out, summary = executed
    env = {**os.environ, "HFE_EXAMPLE_OUT": str(out), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "mup_width_sweep.py")], cwd=out, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "30 already finished, 0 to run" in proc.stdout
    assert _summary(proc.stdout) == summary
