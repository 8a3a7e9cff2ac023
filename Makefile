# swallow — the DAG over real files. `make help` lists the targets.
# PROFILE selects configs/<profile>.yaml (tiny by default): `PROFILE=smoke make reproduce`.
# DRY_RUN=1 with reproduce prints the plan instead; NUM_PROCESSES=N trains each run on N processes (GPUs).

PROFILE ?= tiny
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ENV_STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
KERNEL := swallow

CONFIG := configs/$(PROFILE).yaml
RUN := runs/$(PROFILE)
NB_OUT := $(RUN)/notebooks

# Offline by default: a Hub id fails at once instead of after ~45 s of retries. A profile with `offline: false` (any
# YAML spelling of false) names Hub data and models: every process it starts is online (apply_environment() in each
# entry point says the same), and `make reproduce` runs `make preflight` first.
PROFILE_ONLINE := $(filter false False FALSE no No NO off Off OFF,$(shell sed -nE 's/^offline:[[:space:]]*([A-Za-z]+).*/\1/p' $(CONFIG) 2>/dev/null))
ifeq ($(PROFILE_ONLINE),)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
else
export HF_HUB_OFFLINE := 0
export HF_DATASETS_OFFLINE := 0
export TRANSFORMERS_OFFLINE := 0
endif
PREFLIGHT := $(if $(PROFILE_ONLINE),preflight)
export TOKENIZERS_PARALLELISM ?= false
export PYTHONHASHSEED ?= 0

PAPERMILL = $(VENV)/bin/papermill --log-output --no-progress-bar -k $(KERNEL) --cwd notebooks \
            -p config_path $(abspath $(CONFIG))

# papermill writes its output notebook as it goes: run it under .partial/ and rename on success, so a stage that is
# interrupted (Ctrl-C, kill -9) leaves no executed notebook for Make to take as done; the next run redoes the stage
# and the stage's own code skips or resumes what it finished (datasets, trained steps, evaluated checkpoints).
define run_notebook
	@mkdir -p $(@D)/.partial
	$(PAPERMILL) $(1) $< $(@D)/.partial/$(@F)
	@mv -f $(@D)/.partial/$(@F) $@
endef

CORE_CODE := swallowlib/__init__.py swallowlib/config.py swallowlib/paths.py swallowlib/provenance.py
CORPUS_CODE := $(CORE_CODE) $(wildcard swallowlib/corpus/*.py)
TOKENIZER_CODE := $(CORE_CODE) $(wildcard swallowlib/tokenizer/*.py)
TRAIN_CODE := $(CORE_CODE) $(wildcard swallowlib/train/*.py) $(wildcard configs/accelerate/*.yaml)
EMBED_CODE := $(TRAIN_CODE) $(wildcard swallowlib/embedding_init/*.py)
EVAL_CODE := $(CORE_CODE) $(wildcard swallowlib/eval/*.py)
ANALYSIS_CODE := $(CORE_CODE) swallowlib/analysis.py $(wildcard swallowlib/*/report.py) swallowlib/eval/metrics.py

.PHONY: help venv reproduce study preflight plan smoke corpus tokenizer embedding-init pretrain eval analysis test lint bench lab report gpu-check clean-runs

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-15s\033[0m %s\n", $$1, $$2}'
	@echo "  PROFILE=$(PROFILE) (configs/*.yaml: $(notdir $(basename $(wildcard configs/*.yaml))))"

# --- environment ------------------------------------------------------------------------------------------------
$(ENV_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (swallow)" >/dev/null
	rm -f $(VENV)/.installed-* && touch $@

venv: $(ENV_STAMP) ## create/update the project's virtual environment (.venv) from pyproject.toml

# --- stages -----------------------------------------------------------------------------------------------------
# reproduce's preflight (online profiles) finishes before stage 01 starts, under make -j too.
$(NB_OUT)/01_corpus.ipynb: notebooks/01_corpus.ipynb $(CONFIG) $(CORPUS_CODE) | $(ENV_STAMP) $(if $(filter reproduce,$(MAKECMDGOALS)),$(PREFLIGHT))
	$(call run_notebook)

corpus: $(ENV_STAMP) $(NB_OUT)/01_corpus.ipynb ## stage 01: fetch, extract, filter, dedup, split the corpus

$(NB_OUT)/02_tokenizer.ipynb: notebooks/02_tokenizer.ipynb $(CONFIG) $(TOKENIZER_CODE) $(NB_OUT)/01_corpus.ipynb | $(ENV_STAMP)
	$(call run_notebook)

tokenizer: corpus $(NB_OUT)/02_tokenizer.ipynb ## stage 02: base + Japanese tokenizers, merge, HF export, efficiency

$(NB_OUT)/03_embedding_init.ipynb: notebooks/03_embedding_init.ipynb $(CONFIG) $(EMBED_CODE) $(NB_OUT)/02_tokenizer.ipynb | $(ENV_STAMP)
	$(call run_notebook)

embedding-init: tokenizer $(NB_OUT)/03_embedding_init.ipynb ## stage 03: base model, resize, init methods compared

# NUM_PROCESSES: processes per training run (GPUs on one machine; accelerate's gpu_1 / gpu_multi configs).
$(NB_OUT)/04_pretrain.ipynb: notebooks/04_pretrain.ipynb $(CONFIG) $(TRAIN_CODE) $(NB_OUT)/03_embedding_init.ipynb | $(ENV_STAMP)
	$(call run_notebook,$(if $(NUM_PROCESSES),-p num_processes $(NUM_PROCESSES)))

pretrain: embedding-init $(NB_OUT)/04_pretrain.ipynb ## stage 04: the continual pre-training runs (subprocesses)

$(NB_OUT)/05_eval.ipynb: notebooks/05_eval.ipynb $(CONFIG) $(EVAL_CODE) $(NB_OUT)/04_pretrain.ipynb | $(ENV_STAMP)
	$(call run_notebook)

eval: pretrain $(NB_OUT)/05_eval.ipynb ## stage 05: lm-eval over every checkpoint, one results table

# The extended study's results, once `make study` has written them, are part of the analysis.
STUDY := $(RUN)/study/summary.json
$(NB_OUT)/06_analysis.ipynb: notebooks/06_analysis.ipynb $(CONFIG) $(ANALYSIS_CODE) $(NB_OUT)/05_eval.ipynb $(wildcard $(STUDY)) | $(ENV_STAMP)
	$(call run_notebook)

analysis: eval $(NB_OUT)/06_analysis.ipynb ## stage 06: findings table + every figure of the study

# The rehearsal profile's local stand-ins for tinyllama-1.1b's Hub model and datasets (swallowlib/rehearsal.py),
# named by configs/rehearsal.yaml; built once, deterministically, before the stages (and the preflight) read them.
REHEARSAL := data/rehearsal/manifest.json
$(REHEARSAL): swallowlib/rehearsal.py swallowlib/tokenizer/base.py swallowlib/tokenizer/export.py | $(ENV_STAMP)
	$(PY) -m swallowlib.rehearsal --out $(@D)

ifeq ($(PROFILE),rehearsal)
$(NB_OUT)/01_corpus.ipynb $(NB_OUT)/03_embedding_init.ipynb preflight: $(REHEARSAL)
endif

REPORT := $(RUN)/report/index.html
$(REPORT): $(wildcard $(NB_OUT)/*.ipynb) swallowlib/report.py | $(ENV_STAMP)
	$(PY) -m swallowlib.report --profile $(PROFILE)

# After reproduce (order-only: it reuses what reproduce built, and never re-runs a notebook because code changed).
STUDY_CODE := $(TRAIN_CODE) $(EVAL_CODE) swallowlib/matrix.py swallowlib/study.py swallowlib/stage.py
$(STUDY): $(CONFIG) $(STUDY_CODE) | $(ENV_STAMP) $(NB_OUT)/05_eval.ipynb
	$(PY) -m swallowlib.study --config $(CONFIG)

study: $(STUDY) ## after reproduce: seeds, NVE+characters, vocabulary sweep, longer runs, scratch at equal total tokens; rows join the findings
	@$(MAKE) --no-print-directory $(NB_OUT)/06_analysis.ipynb $(REPORT)
	@echo "study: $(PROFILE) done; findings in $(RUN)/analysis/, report $(REPORT)"

ifdef DRY_RUN
reproduce: plan
else
reproduce: $(PREFLIGHT) corpus tokenizer embedding-init pretrain eval analysis ## run every notebook of PROFILE through papermill (skips what is up to date; online profiles: preflight first); DRY_RUN=1: print the plan
	@$(MAKE) --no-print-directory $(REPORT)
	@echo "reproduce: $(PROFILE) done; executed notebooks in $(NB_OUT)/, report $(REPORT)"
endif

plan: ## print PROFILE's full plan (stages, runs, tokens, expected GPU-hours) without touching the network
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m swallowlib.plan --config $(CONFIG)

preflight: $(ENV_STAMP) ## PROFILE's Hub data, models, lm-eval tasks, GPU, disk and memory checked in seconds (exit 1 on a failure)
	$(PY) -m swallowlib.preflight --config $(CONFIG)$(if $(NUM_PROCESSES), --processes $(NUM_PROCESSES))

smoke: ## the smoke profile end to end (what CI runs)
	$(MAKE) reproduce PROFILE=smoke

report: $(ENV_STAMP) ## HTML of the executed notebooks of PROFILE -> runs/PROFILE/report/
	$(PY) -m swallowlib.report --profile $(PROFILE)

# --- quality ----------------------------------------------------------------------------------------------------
test: $(ENV_STAMP) ## fast, hermetic test suite (CPU only, a few minutes)
	$(PY) -m pytest

lint: $(ENV_STAMP) ## ruff
	$(VENV)/bin/ruff check .

bench: $(ENV_STAMP) ## every benchmark on PROFILE's data, one table (never part of `make test`)
	$(PY) -m swallowlib.bench --profile $(PROFILE)

gpu-check: ## on a CUDA machine: TinyLlama-shaped bf16 run: tokens/s, MFU, memory vs the model, resume, 1-GPU FSDP (no venv, no data)
	$(if $(wildcard $(PY)),$(PY),python3) -m swallowlib.train.gpu_check

lab: $(ENV_STAMP) ## JupyterLab on the notebooks with the project kernel
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

clean-runs: ## delete runs/PROFILE (outputs of the profile; the archive cache in data/ stays)
	rm -rf $(RUN)
