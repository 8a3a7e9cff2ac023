"""Online means online: apply_environment, Make and the processes a profile starts agree on the profile's `offline:`.

An offline profile sets the Hugging Face offline variables to 1 (as it always did); an online one (`offline: false`)
sets them to 0, updates the copies huggingface_hub and datasets took at import, and every subprocess started the way
the project starts them (swallowlib.train.launch, papermill kernels under Make) inherits that.
"""

import json
import os
import shutil
import subprocess
import sys

import datasets.config as ds_config
import huggingface_hub.constants as hub_constants
import pytest

from swallowlib import paths, train
from swallowlib.config import apply_environment, load_config

VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
ONLINE, OFFLINE = "tinyllama-1.1b", "tiny"

CHILD = (
    "import json, os\n"
    "import datasets.config as d, huggingface_hub.constants as h\n"
    f"print('ENV ' + json.dumps({{**{{v: os.environ.get(v) for v in {VARS!r}}}, "
    "'hub': h.HF_HUB_OFFLINE, 'datasets': d.HF_HUB_OFFLINE}))\n"
)


@pytest.fixture
def hf_state(monkeypatch):
    """Whatever a test does to the offline variables and constants is undone afterwards."""
    for var in VARS:
        monkeypatch.setenv(var, "restore-me")  # records the original value, present or not
        if var in os.environ:
            monkeypatch.delenv(var)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", hub_constants.HF_HUB_OFFLINE)
    monkeypatch.setattr(ds_config, "HF_HUB_OFFLINE", ds_config.HF_HUB_OFFLINE)
    monkeypatch.setattr(ds_config, "HF_DATASETS_OFFLINE", ds_config.HF_DATASETS_OFFLINE)
    return monkeypatch


def _set_all(monkeypatch, value: str) -> None:
    for var in VARS:
        monkeypatch.setenv(var, value)
    on = value == "1"
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", on)
    monkeypatch.setattr(ds_config, "HF_HUB_OFFLINE", on)
    monkeypatch.setattr(ds_config, "HF_DATASETS_OFFLINE", on)


def test_profiles_declare_what_they_need():
    assert load_config(OFFLINE).offline and not load_config(ONLINE).offline


def test_online_profile_clears_offline_even_after_import(hf_state):
    """Make or the shell exported HF_HUB_OFFLINE=1 and the libraries were imported with it: online wins anyway."""
    from huggingface_hub import is_offline_mode
    from transformers.utils import hub as transformers_hub

    _set_all(hf_state, "1")
    assert is_offline_mode()
    apply_environment(load_config(ONLINE))
    assert all(os.environ[v] == "0" for v in VARS)
    assert hub_constants.HF_HUB_OFFLINE is False
    assert ds_config.HF_HUB_OFFLINE is False and ds_config.HF_DATASETS_OFFLINE is False
    assert not is_offline_mode() and not transformers_hub.is_offline_mode()  # what from_pretrained asks


def test_offline_profile_stays_offline(hf_state):
    from huggingface_hub import is_offline_mode

    _set_all(hf_state, "0")
    apply_environment(load_config(OFFLINE))
    assert all(os.environ[v] == "1" for v in VARS)
    assert hub_constants.HF_HUB_OFFLINE is True
    assert ds_config.HF_HUB_OFFLINE is True and ds_config.HF_DATASETS_OFFLINE is True
    assert is_offline_mode()


def test_a_later_setdefault_cannot_turn_an_online_process_offline(hf_state):
    """The local-only loaders call os.environ.setdefault("HF_HUB_OFFLINE", "1"): "0" must already be there."""
    apply_environment(load_config(ONLINE))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    assert os.environ["HF_HUB_OFFLINE"] == "0"


@pytest.mark.parametrize("profile, before, expected, constant", [(ONLINE, "1", "0", False), (OFFLINE, "0", "1", True)])
def test_training_subprocess_inherits_the_profile(hf_state, capsys, profile, before, expected, constant):
    """swallowlib.train.launch (what notebooks 03/04 call) starts its subprocess with the profile's choice."""
    _set_all(hf_state, before)
    apply_environment(load_config(profile))
    hf_state.setattr(train, "launch_command", lambda *a, **k: [sys.executable, "-c", CHILD])
    assert train.launch(paths.config_path(profile), "unused") == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("ENV "))
    got = json.loads(line[4:])
    assert {v: got[v] for v in VARS} == dict.fromkeys(VARS, expected)
    assert got["hub"] is constant and got["datasets"] is constant


def test_every_entry_point_applies_the_profile():
    """Each notebook applies the profile right after loading it; so do the training and evaluation commands."""
    for nb in sorted(paths.NOTEBOOKS.glob("0*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        setup = next(("".join(c["source"]) for c in cells
                      if c["cell_type"] == "code" and "load_config(" in "".join(c["source"])), "")  # fmt: skip
        assert "apply_environment(cfg)" in setup, f"{nb.name}: no apply_environment(cfg) after load_config"
    for module in ("train/__main__.py", "eval/__main__.py", "preflight.py"):
        assert "apply_environment(" in (paths.ROOT / "swallowlib" / module).read_text(encoding="utf-8"), module


def _make_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in VARS and not k.startswith("MAKE")}


@pytest.mark.skipif(not shutil.which("make"), reason="needs make")
@pytest.mark.parametrize("profile, expected", [(ONLINE, "0 0 0"), (OFFLINE, "1 1 unset")])
def test_make_exports_what_the_profile_says(profile, expected):
    """Papermill kernels inherit Make's environment: an online profile is not forced offline there."""
    show = ("show-offline: ; @echo $${HF_HUB_OFFLINE:-unset} $${HF_DATASETS_OFFLINE:-unset} "
            "$${TRANSFORMERS_OFFLINE:-unset}")
    p = subprocess.run(["make", "-s", "--no-print-directory", "--eval", show, "show-offline", f"PROFILE={profile}"],
                       cwd=paths.ROOT, env=_make_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == expected


@pytest.mark.skipif(not shutil.which("make"), reason="needs make")
@pytest.mark.parametrize("profile, preflight", [(ONLINE, True), (OFFLINE, False)])
def test_reproduce_runs_preflight_first_for_online_profiles(profile, preflight):
    p = subprocess.run(["make", "-n", "--no-print-directory", "reproduce", f"PROFILE={profile}"], cwd=paths.ROOT,
                       env=_make_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if "swallowlib.preflight" in ln or "papermill" in ln]
    assert ("swallowlib.preflight" in lines[0]) is preflight, lines[:2]
