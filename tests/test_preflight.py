"""make preflight (swallowlib.preflight): each check on its own, hermetic (local Hub-layout datasets, a tiny local
model, fakes for the lm-eval and memory modules); the real Hub only in `network` tests (deselected by default)."""

import dataclasses
import sys
import types

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from swallowlib import paths, preflight
from swallowlib.config import HubSource, load_config
from swallowlib.preflight import GiB, Result

ONLINE = "tinyllama-1.1b"


@pytest.fixture(autouse=True)
def _restore_hf(monkeypatch):
    """main() applies the profile's environment: undo it after each test."""
    import datasets.config as ds_config
    import huggingface_hub.constants as hub_constants

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(ds_config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(ds_config, "HF_DATASETS_OFFLINE", True)


@pytest.fixture(scope="module")
def hub_dataset(tmp_path_factory):
    """A local directory laid out like a Hub dataset repo: Parquet shards per config + a README `configs:` block."""
    root = tmp_path_factory.mktemp("rehearsal")
    for i in range(2):
        shard = root / "data" / "jpn_Jpan" / "train" / f"{i:03d}.parquet"
        shard.parent.mkdir(parents=True, exist_ok=True)
        texts = [f"吾輩は猫である。名前はまだ無い。{i}-{j}" for j in range(3)]
        pq.write_table(pa.table({"id": [f"{i}-{j}" for j in range(3)], "text": texts}), shard)
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: jpn_Jpan\n  data_files:\n  - split: train\n"
        "    path: data/jpn_Jpan/train/*.parquet\n---\n# rehearsal set\n", encoding="utf-8")  # fmt: skip
    return root


def _source(dataset, **kw) -> HubSource:
    return HubSource(**{"name": "rehearsal-ja", "dataset": str(dataset), "config": "jpn_Jpan", "language": "ja",
                        "licence": "test", **kw})  # fmt: skip


def test_local_hub_layout_dataset_streams_offline(hub_dataset):
    r = preflight.check_dataset(_source(hub_dataset), network=False)
    assert r.status == "ok", r
    assert "3 rows streamed" in r.message and "'text'" in r.message


def test_missing_text_field_names_source_and_field(hub_dataset):
    r = preflight.check_dataset(_source(hub_dataset, text_field="content"), network=False)
    assert r.status == "fail"
    line = str(r)
    assert "\n" not in line and "rehearsal-ja" in line and "'content'" in line and "text_field" in line
    assert "fields: id, text" in line


@pytest.mark.parametrize("kw, words", [({"config": "eng_Latn"}, "eng_Latn"), ({"split": "valid"}, "valid")])
def test_unknown_config_or_split_fails_with_the_choices(hub_dataset, kw, words):
    r = preflight.check_dataset(_source(hub_dataset, **kw), network=False)
    assert r.status == "fail" and words in r.message and "\n" not in str(r)


def test_missing_local_dataset_directory_fails(tmp_path):
    r = preflight.check_dataset(_source(tmp_path / "nope"), network=False)
    assert r.status == "fail" and "directory not found" in r.message


def test_hub_dataset_offline_is_not_checked():
    r = preflight.check_dataset(_source("HuggingFaceFW/fineweb-2"), network=False)
    assert r.status == "skipped" and r.message.startswith("not checked (offline)")
    assert "HuggingFaceFW/fineweb-2" in r.message


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny random Llama saved with save_pretrained, with a tokenizer.json."""
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM

    d = tmp_path_factory.mktemp("model")
    conf = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                       num_key_value_heads=2, vocab_size=8)  # fmt: skip
    LlamaForCausalLM(conf).save_pretrained(d)
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "a", "b", "c", "d", "e"])}
    Tokenizer(models.WordLevel(vocab, unk_token="<unk>")).save(str(d / "tokenizer.json"))
    return d


def test_local_model_directory_passes(tiny_model):
    r = preflight.check_model(str(tiny_model), used_by=["train.runs.x.init"], network=False)
    assert r.status == "ok", r
    assert "llama" in r.message and "vocab_size 8" in r.message


def test_local_model_without_tokenizer_fails(tiny_model, tmp_path):
    import shutil

    d = tmp_path / "no-tok"
    shutil.copytree(tiny_model, d)
    (d / "tokenizer.json").unlink()
    r = preflight.check_model(str(d), network=False)
    assert r.status == "fail" and "tokenizer" in r.message


def test_nonexistent_model_directory_fails_in_one_line(tmp_path):
    r = preflight.check_model(str(tmp_path / "missing-model"), used_by=["train.runs.cpt.init"], network=True)
    assert r.status == "fail"
    assert "\n" not in str(r) and "directory not found" in r.message and "train.runs.cpt.init" in r.message


def test_hub_model_offline_is_not_checked():
    r = preflight.check_model("meta-llama/Llama-2-7b-hf", used_by=["train.model.pretrained"], network=False)
    assert r.status == "skipped" and r.message.startswith("not checked (offline)")


def test_models_of_a_gpu_profile():
    cfg = load_config(ONLINE)
    assert preflight.models_of(cfg) == {
        "TinyLlama/TinyLlama_v1.1": ["train.model.pretrained", "train.runs.cpt-nve.init"]
    }
    assert preflight.models_of(load_config("tiny")) == {}  # scratch / run: / init: only


def test_offline_run_reports_hub_resources_as_not_checked():
    cfg = load_config(ONLINE)
    results = [r for r in preflight.run_checks(cfg, network=False)
               if r.check.startswith(("dataset", "model", "Hugging"))]  # fmt: skip
    assert len(results) == len(cfg.corpus.hub) + 1
    assert all(r.status == "skipped" and r.message.startswith("not checked (offline)") for r in results)


def test_unreachable_hub_is_one_failure_and_the_rest_not_checked(monkeypatch):
    """The Hub endpoint at a closed port: one FAIL line saying what to do, every Hub check 'not checked'."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a proxy would answer for the closed port
    cfg = load_config(ONLINE)
    results = [r for r in preflight.run_checks(cfg, network=True)
               if r.check.startswith(("dataset", "model", "Hugging"))]  # fmt: skip
    assert results[0].check == "Hugging Face Hub" and results[0].status == "fail"
    assert "127.0.0.1:9 unreachable" in results[0].message and "--offline" in results[0].message
    assert all(r.status == "skipped" and "not checked (Hub unreachable)" in r.message for r in results[1:])


# --- lm-eval tasks (swallowlib.eval.harness.check_task_loading: faked; the real one is tested with the harness)


def test_harness_problems_are_one_line_each(monkeypatch):
    from swallowlib.eval import harness

    seen = {}

    def fake(names, tm=None, *, network):
        seen.update(names=names, network=network)
        return ["gsm8k: dataset openai/gsm8k not reachable", "not checked (offline): triviaqa's dataset"]

    monkeypatch.setattr(harness, "check_task_loading", fake, raising=False)
    out = preflight.check_harness(load_config(ONLINE), network=False)
    assert seen["network"] is False and "gsm8k" in seen["names"]
    assert [r.status for r in out] == ["ok", "fail", "skipped"]
    assert out[0].message.startswith(f"{len(seen['names']) - 2} of {len(seen['names'])} tasks")


def test_harness_check_missing_says_so(monkeypatch):
    from swallowlib.eval import harness

    monkeypatch.delattr(harness, "check_task_loading", raising=False)
    [r] = preflight.check_harness(load_config(ONLINE))
    assert r.status == "skipped" and "check_task_loading is not in this checkout" in r.message


def test_no_harness_tasks_is_fine():
    [r] = preflight.check_harness(load_config("tiny"))
    assert r.status == "ok"


# --- accelerator, disk, memory


def test_accelerator():
    gpu, cpu = load_config(ONLINE), load_config("tiny")
    assert preflight.check_accelerator(gpu, []).status == "fail"
    assert "CUDA machine" in preflight.check_accelerator(gpu, []).message
    assert preflight.check_accelerator(cpu, []).status == "ok"
    r = preflight.check_accelerator(gpu, [("NVIDIA H100 80GB HBM3", 80 * GiB)])
    assert r.status == "ok" and "H100" in r.message and "80.0 GiB" in r.message


def test_disk_estimate_arithmetic():
    cfg = load_config(ONLINE)
    cfg = dataclasses.replace(cfg, corpus=dataclasses.replace(cfg.corpus, hub=[]),
                              train=dataclasses.replace(cfg.train, keep_last=2))  # fmt: skip
    plan = {"runs": [{"params": 10**9, "checkpoints": [1, 2], "tokenizer": "base", "tokens": 10**9, "vocab": 32000}]}
    est = preflight.disk_estimate(cfg, plan, bf16=True)
    assert est["resume checkpoints"] == 3 * 12 * 10**9  # keep_last + the one being written
    assert est["milestones"] == 2 * 2 * 10**9
    assert est["token cache"] == 2 * 10**9 and est["hub corpus"] == 0
    assert "stage-03 models" not in est


def test_disk_check(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    cfg = load_config("tiny")
    ok = preflight.check_disk(cfg, {"milestones": 1})
    assert ok.status == "ok" and str(tmp_path) in ok.message
    bad = preflight.check_disk(cfg, {"milestones": 10**18})
    assert bad.status == "fail" and "SWALLOW_RUNS" in bad.message and "\n" not in str(bad)


def test_disk_estimate_of_a_gpu_profile_from_its_plan():
    est = preflight.disk_estimate(load_config(ONLINE), bf16=True)
    assert all(v > 0 for v in est.values())
    assert 100 * GiB < sum(est.values()) < 10_000 * GiB  # 1.1B parameters, 12 runs: hundreds of GiB


@pytest.fixture
def fake_memory(monkeypatch):
    """swallowlib.train.memory as its interface is specified: estimate_run -> .total bytes; check_fits -> str | None."""
    mod = types.ModuleType("swallowlib.train.memory")
    sizes = {}

    @dataclasses.dataclass
    class Est:
        total: int

        def gib(self):
            return self.total / GiB

    mod.estimate_run = lambda cfg, run, processes=None: Est(sizes.get(run, 10 * GiB))
    mod.check_fits = lambda est, device_bytes, headroom=0.15: (
        f"needs {est.gib():.0f} GiB of {device_bytes / GiB:.0f}" if est.total > device_bytes * (1 - headroom) else None)
    monkeypatch.setitem(sys.modules, "swallowlib.train.memory", mod)
    return sizes


def test_memory_every_run_fits(fake_memory):
    cfg = dataclasses.replace(load_config(ONLINE), train=dataclasses.replace(load_config(ONLINE).train,
                                                                             device_memory_gib=80.0))  # fmt: skip
    fake_memory["cpt-ve"] = 30 * GiB
    [r] = preflight.check_memory(cfg, [])
    assert r.status == "ok" and "train.device_memory_gib (80 GiB)" in r.message and "cpt-ve" in r.message


def test_memory_a_run_too_big_fails_naming_it(fake_memory):
    fake_memory["scratch-ve"] = 200 * GiB
    out = preflight.check_memory(load_config(ONLINE), [("NVIDIA H100", 80 * GiB)])
    assert [(r.status, r.check) for r in out] == [("fail", "run scratch-ve")]
    assert "needs 200 GiB of 80" in out[0].message


def test_process_count_that_does_not_split_the_batch_fails(fake_memory):
    [r] = preflight.check_memory(load_config(ONLINE), [("NVIDIA H100", 80 * GiB)], processes=3)
    assert r.status == "fail" and r.check == "processes" and "micro_batch_size" in r.message


def test_memory_module_missing_or_cpu_profile(monkeypatch):
    monkeypatch.setitem(sys.modules, "swallowlib.train.memory", None)  # import fails
    [r] = preflight.check_memory(load_config(ONLINE), [("NVIDIA H100", 80 * GiB)])
    assert r.status == "skipped" and "swallowlib.train.memory" in r.message and "not in this checkout" in r.message
    [r] = preflight.check_memory(load_config("tiny"), [])
    assert r.status == "skipped" and "CPU profile" in r.message


# --- the command


def test_main_on_the_tiny_profile(capsys):
    assert preflight.main(["--config", "tiny"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("preflight tiny (") and "offline" in out[0]
    assert out[-1].startswith("preflight tiny: ") and "0 failed" in out[-1]


def test_main_exit_code_follows_failures(capsys, monkeypatch):
    monkeypatch.setattr(preflight, "run_checks", lambda cfg, **kw: iter([Result("ok", "a", "fine"),
                                                                        Result("fail", "b", "do X")]))  # fmt: skip
    assert preflight.main(["--config", "tiny"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  b: do X" in out and "1 ok, 1 failed, 0 not checked" in out
    assert preflight.main(["--config", "no-such-profile"]) == 2


# --- the real Hub (pytest -m network)


@pytest.mark.network
def test_network_gpu_profile_sources_and_model(monkeypatch):
    from swallowlib.config import apply_environment

    cfg = load_config(ONLINE)
    apply_environment(cfg)
    assert preflight.check_hub_reachable().status == "ok"
    for src in cfg.corpus.hub:
        r = preflight.check_dataset(src)
        assert r.status == "ok", r
    r = preflight.check_model("TinyLlama/TinyLlama_v1.1")
    assert r.status == "ok", r


@pytest.mark.network
def test_network_missing_and_gated_models():
    from huggingface_hub import get_token

    from swallowlib.config import apply_environment

    apply_environment(load_config(ONLINE))
    r = preflight.check_model("swallow-preflight/does-not-exist-7b")
    assert r.status == "fail" and "does not exist" in r.message
    if not get_token():
        r = preflight.check_model("meta-llama/Llama-2-7b-hf")
        assert r.status == "fail"
        assert "accept the licence at https://huggingface.co/meta-llama/Llama-2-7b-hf" in r.message
