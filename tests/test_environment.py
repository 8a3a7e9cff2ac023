"""Online means online: apply_environment, Make and the processes a profile starts agree on the profile's `offline:`.

An offline profile sets the Hugging Face offline variables to 1 (as it always did); an online one (`offline: false`)
sets them to 0, updates the copies huggingface_hub and datasets took at import, and every subprocess started the way
the project starts them (swallowlib.train.launch, papermill kernels under Make) inherits that.

The conda environment (environment.yml) is the one `make venv` builds: a Python that requires-python admits, the
project installed by pip with the same extras, every pin exactly pyproject.toml's.

Run: .venv/bin/python -m pytest tests/test_environment.py -m 'not network'
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import datasets.config as ds_config
import huggingface_hub.constants as hub_constants
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("make"), reason="needs make")
@pytest.mark.parametrize("profile, preflight", [(ONLINE, True), (OFFLINE, False)])
def test_reproduce_runs_preflight_first_for_online_profiles(profile, preflight):
    p = subprocess.run(["make", "-n", "--no-print-directory", "reproduce", f"PROFILE={profile}"], cwd=paths.ROOT,
                       env=_make_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if "swallowlib.preflight" in ln or "papermill" in ln]
    assert ("swallowlib.preflight" in lines[0]) is preflight, lines[:2]


# --- environment.yml against pyproject.toml ----------------------------------------------------------------------
CONDA_TO_PYPI = {"pytorch": "torch"}  # conda-forge names that differ from the PyPI name pyproject pins
PROJECT = re.compile(r"^(?:-e\s+)?\.(?:\[(?P<extras>[^\]]*)\])?$")  # the project itself: `-e .[dev]`, `.`


def _pins(project: dict) -> tuple[dict[str, str], list[str]]:
    """``{canonical name: pinned version}`` over dependencies and optional dependencies, and the ones not pinned."""
    reqs = [*project["dependencies"], *(r for group in project["optional-dependencies"].values() for r in group)]
    pins, loose = {}, []
    for line in reqs:
        req = Requirement(line)
        spec = list(req.specifier)
        if len(spec) == 1 and spec[0].operator == "==" and "*" not in spec[0].version:
            pins[canonicalize_name(req.name)] = spec[0].version
        else:
            loose.append(line)
    return pins, loose


def _python_problems(spec: str, requires: SpecifierSet) -> list[str]:
    """conda's ``python=3.11`` is every 3.11.x; each of them must satisfy requires-python (a range, so both ends)."""
    m = re.fullmatch(r"python\s*(=|==)\s*(\d+(?:\.\d+)*)", spec)
    if not m:
        return [f"environment.yml: {spec!r}: write python=X.Y (or ==X.Y.Z) so it can be checked"]
    op, v = m.groups()
    pad = 2 - v.count(".") if op == "=" else 0  # conda's `=` is a prefix: 3.11 stands for 3.11.0 up to 3.11.x
    lowest, highest = Version(v + ".0" * pad), Version(v + ".999" * pad)
    return [f"environment.yml: {spec} admits {x}, outside requires-python {requires}"
            for x in sorted({lowest, highest}) if x not in requires]  # fmt: skip


def env_mismatches(env: dict, env_text: str, pyproject: dict, venv_extras: set[str]) -> list[str]:
    """What in environment.yml (parsed, and its text for the comments) disagrees with pyproject.toml; ``venv_extras``
    are the extras `make venv` installs."""
    project = pyproject["project"]
    pins, loose = _pins(project)
    problems = [f"pyproject.toml: {line!r} is not an exact pin" for line in loose]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = [line for d in env["dependencies"] if isinstance(d, dict) for line in d.get("pip", [])]
    pythons = [d for d in conda if re.match(r"python(?![\w.-])", d)]
    if len(pythons) != 1:
        problems.append(f"environment.yml: expected one python entry, found {pythons}")
    for spec in pythons:
        problems += _python_problems(spec, SpecifierSet(project["requires-python"]))
    for spec in conda:
        name, _, version = re.match(r"([A-Za-z0-9_.\-]+)\s*(==?)?\s*(\S*)", spec).groups()
        name = canonicalize_name(CONDA_TO_PYPI.get(name, name))
        if name in pins and version != pins[name]:
            problems.append(f"environment.yml: conda {spec!r}, pyproject pins {name}=={pins[name]}")
    installs_project = False
    for line in pip:
        if m := PROJECT.match(line.strip()):
            installs_project = True
            extras = {e.strip() for e in (m["extras"] or "").split(",") if e.strip()}
            if unknown := extras - set(project["optional-dependencies"]):
                problems.append(f"environment.yml: {line!r} names extras pyproject lacks: {sorted(unknown)}")
            if extras != venv_extras:
                problems.append(f"environment.yml: {line!r} installs extras {sorted(extras)}, make venv "
                                f"{sorted(venv_extras)}")  # fmt: skip
            continue
        req = Requirement(line)
        name, spec = canonicalize_name(req.name), str(req.specifier)
        if name not in pins:
            problems.append(f"environment.yml: pip {line!r} is not a pyproject dependency")
        elif spec != f"=={pins[name]}":
            problems.append(f"environment.yml: pip {line!r}, pyproject pins {name}=={pins[name]}")
    if not installs_project:
        problems.append("environment.yml: the pip section does not install the project (-e .[...])")
    for version in re.findall(r"^#.*\btorch (\d+(?:\.\d+)+)", env_text, re.M):  # "install ... torch 2.13.0 first"
        if version != pins.get("torch"):
            problems.append(f"environment.yml: a comment names torch {version}, pyproject pins {pins.get('torch')}")
    return problems


def _repo_inputs() -> tuple[dict, str, dict, set[str]]:
    text = (paths.ROOT / "environment.yml").read_text(encoding="utf-8")
    pyproject = tomllib.loads((paths.ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    venv = re.search(r"pip install .*-e '\.\[([^\]]*)\]'", (paths.ROOT / "Makefile").read_text(encoding="utf-8"))
    assert venv, "Makefile: no `pip install -e '.[...]'` in the venv recipe"
    return yaml.safe_load(text), text, pyproject, {e.strip() for e in venv.group(1).split(",")}


def test_environment_yml_matches_pyproject():
    assert env_mismatches(*_repo_inputs()) == []


def _repin(deps: list[str], name: str, version: str) -> None:
    deps[:] = [f"{name}=={version}" if Requirement(d).name == name else d for d in deps]


@pytest.mark.parametrize("edit, expected", [
    (lambda e, p: e["dependencies"].__setitem__(0, "python=3.12"), "python=3.12 admits 3.12.0"),
    (lambda e, p: e["dependencies"].__setitem__(0, "python=3"), "python=3 admits 3.0.0"),
    (lambda e, p: e["dependencies"].insert(1, "numpy=0.0.1"), "conda 'numpy=0.0.1', pyproject pins numpy=="),
    (lambda e, p: e["dependencies"][-1]["pip"].append("numpy==0.0.1"), "pip 'numpy==0.0.1', pyproject pins"),
    (lambda e, p: e["dependencies"][-1]["pip"].append("requests"), "pip 'requests' is not a pyproject dependency"),
    (lambda e, p: e["dependencies"][-1].__setitem__("pip", []), "does not install the project"),
    (lambda e, p: e["dependencies"][-1].__setitem__("pip", ["-e ."]), "installs extras [], make venv ['dev']"),
    (lambda e, p: p["project"]["dependencies"].append("rich>=13"), "'rich>=13' is not an exact pin"),
    (lambda e, p: _repin(p["project"]["dependencies"], "torch", "0.0.1"), "pyproject pins 0.0.1"),
], ids=["python-3.12", "python-3", "conda-pin", "pip-pin", "pip-extra-package", "no-project", "extras",
        "loose-pin", "torch-comment"])  # fmt: skip
def test_environment_check_catches_drift(edit, expected):
    """Each way the two files can drift apart is reported (the test above can fail)."""
    env, text, pyproject, extras = copy.deepcopy(_repo_inputs())
    # the shape the edits assume: python first, the pip section last, a comment naming the torch version
    assert env["dependencies"][0].startswith("python") and isinstance(env["dependencies"][-1], dict)
    assert re.search(r"^#.*\btorch \d", text, re.M), "environment.yml no longer names a torch version"
    edit(env, pyproject)
    problems = env_mismatches(env, text, pyproject, extras)
    assert any(expected in p for p in problems), problems
