"""The notebook contract: thin, parametrised, runnable by papermill, committed without outputs."""

import ast
import json

import pytest

from swallowlib import paths

NOTEBOOKS = sorted(paths.NOTEBOOKS.glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["01_corpus.ipynb"]


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_contract(nb_path):
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    meta = nb["metadata"]
    assert meta["kernelspec"]["name"] == "swallow" and meta["kernelspec"]["language"] == "python"
    assert meta["language_info"]["name"] == "python"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    params = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    tree = ast.parse("".join(params[0]["source"]))
    for stmt in tree.body:  # literals only: name = <constant>
        assert isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant), ast.dump(stmt)
    assert any(t.id == "config_path" for s in tree.body for t in s.targets)
    for c in code:
        assert not c.get("outputs") and c.get("execution_count") is None, "commit notebooks without outputs"
        src = "".join(c["source"])
        for node in ast.walk(ast.parse(src)):
            assert not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef), (
                f"{nb_path.name}: define functions/classes in swallowlib, not in notebooks"
            )
