"""Writes `mup_width_sweep.ipynb` from `mup_width_sweep.py` (cells split at ``# %%``; ``# %% [markdown]`` cells
become markdown), outputs cleared: the notebook and the script stay the same code. The tests check they agree.

    python docs/examples/sync_notebook.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).parent


def cells_of(script: str) -> list[tuple[str, str]]:
    """[(kind, source)] of a percent-format script."""
    cells: list[tuple[str, list[str]]] = []
    for line in script.splitlines():
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
        out.append((kind, "\n".join(lines).strip("\n")))
    return out


def notebook_of(script_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source in cells_of(script_path.read_text()):
        nb.cells.append(
            nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        )
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating gives the same file
        cell["id"] = f"cell-{i}"
    return nb


if __name__ == "__main__":
    for script in sorted(HERE.glob("*.py")):
        if script.name == Path(__file__).name:
            continue
        target = script.with_suffix(".ipynb")
        nbformat.write(notebook_of(script), target)
        print(f"wrote {target}", file=sys.stderr)
