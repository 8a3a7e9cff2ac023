"""The shared atomic writers (swallowlib.provenance): all or nothing, ordinary permissions.

Run: .venv/bin/pytest tests/test_provenance.py -q
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from swallowlib import provenance


def test_atomic_write_replaces_whole_file_with_ordinary_permissions(tmp_path):
    p = tmp_path / "sub" / "out.json"
    provenance.write_json_atomic(p, {"a": 1})
    provenance.write_text_atomic(p, "second")
    assert p.read_text() == "second"
    mode = stat.S_IMODE(os.stat(p).st_mode)
    assert mode == 0o666 & ~provenance._UMASK  # not mkstemp's 0600: reports are served to readers
    assert [x.name for x in p.parent.iterdir()] == ["out.json"]  # no temporary file left behind


def test_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "out.json"
    provenance.write_json_atomic(p, {"ok": True})
    with pytest.raises(TypeError):
        provenance.write_bytes_atomic(p, "text, not bytes")  # fails half-way, after the temporary file exists
    assert json.loads(p.read_text()) == {"ok": True}
    assert [x.name for x in tmp_path.iterdir()] == ["out.json"]
