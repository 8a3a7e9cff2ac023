"""The stage protocol: fingerprint, resumable work directory, staging, provenance, atomic publish."""

import json
from types import SimpleNamespace

import pytest

from swallowlib.stage import Stage


def _stage(tmp_path, inputs, code):
    cfg = SimpleNamespace(profile="p", path=None)
    return Stage("demo", cfg, tmp_path / "p" / "demo", inputs, [code])


@pytest.fixture
def code(tmp_path):
    f = tmp_path / "code.py"
    f.write_text("x = 1\n")
    return f


def test_publish_records_fingerprint_report_and_memory(tmp_path, code, monkeypatch):
    monkeypatch.setattr("swallowlib.stage.provenance", lambda cfg, stage, fingerprint: {"fingerprint": fingerprint})
    st = _stage(tmp_path, {"a": 1}, code)
    assert not st.is_up_to_date()
    with st.staging() as staged:
        with st.step("write"):
            (staged / "out.txt").write_text("done")
        st.report["n"] = 3
    rep = json.loads((st.out / "report.json").read_text())
    assert rep["n"] == 3 and "write" in rep["timings_s"] and rep["peak_memory_mb"] > 0
    assert rep["peak_memory_processes"] >= 1
    assert (st.out / "out.txt").read_text() == "done" and not (tmp_path / "p" / "demo.tmp").exists()
    assert _stage(tmp_path, {"a": 1}, code).is_up_to_date()
    assert not _stage(tmp_path, {"a": 2}, code).is_up_to_date()  # another config
    code.write_text("x = 2\n")
    assert not _stage(tmp_path, {"a": 1}, code).is_up_to_date()  # other code


def test_a_failing_stage_keeps_the_previous_output(tmp_path, code, monkeypatch):
    monkeypatch.setattr("swallowlib.stage.provenance", lambda cfg, stage, fingerprint: {"fingerprint": fingerprint})
    st = _stage(tmp_path, {"a": 1}, code)
    with st.staging() as staged:
        (staged / "out.txt").write_text("first")
    with pytest.raises(RuntimeError), _stage(tmp_path, {"a": 2}, code).staging() as staged:
        (staged / "out.txt").write_text("half")
        raise RuntimeError("killed")
    assert (st.out / "out.txt").read_text() == "first" and not (tmp_path / "p" / "demo.tmp").exists()


def test_work_dir_is_kept_for_the_same_inputs_and_emptied_for_others(tmp_path, code):
    work = _stage(tmp_path, {"a": 1}, code).work_dir()
    (work / "task-0.done").write_text("")
    assert (_stage(tmp_path, {"a": 1}, code).work_dir() / "task-0.done").exists()  # resume: same inputs
    assert not (_stage(tmp_path, {"a": 2}, code).work_dir() / "task-0.done").exists()  # never mixed with others
    st = _stage(tmp_path, {"a": 2}, code)
    st.discard_work()
    assert not work.exists()
