# DFER toolkit: the user's commands. `make help` lists them.
#
# Every target that runs Python first makes sure .venv matches requirements.txt: the stamp
# file is named after the lock's hash, so changing a pin rebuilds the environment. The lock is
# installed with ordinary dependency resolution, so torch brings its CUDA libraries on Linux.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
LOCK_HASH := $(shell sha256sum requirements.txt | cut -c1-16)
STAMP := $(VENV)/.installed-$(LOCK_HASH)

DATASET ?= sample
DATA_ROOT ?= data/$(DATASET)
OUT ?= shards/$(notdir $(basename $(DATASET)))
PROFILE ?=
CROP ?=
FACE_GPUS ?=
DESCRIBE_GPUS ?=
WEIGHTS_DIR ?=
OVERWRITE ?=
DESCRIBER ?= geometric
TRAIN_ARGS ?=
ROWS ?=
FOLD ?= 1
MODEL ?= fineclip-b16
RECIPE ?= ours
RAY_ADDRESS ?=
export RAY_ADDRESS
SAMPLE_SEED ?= 0
CLIPS_PER_CLASS ?= 10

.PHONY: help env lock test demo manifest sample preprocess describe summary verify inspect train ablate eval zero-shot pretrain-tiny bench predict clean

help: ## list targets and variables
	@echo "DFER toolkit. Usage: make <target> [VAR=value ...]"
	@echo
	@echo "Targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-12s %s\n", $$1, $$2}'
	@echo
	@echo "Variables (current value):"
	@echo "  DATASET      mafw | dfew | ferv39k | sample | path/to/manifest.csv   ($(DATASET))"
	@echo "  DATA_ROOT    folder holding the dataset's videos or frame folders     ($(DATA_ROOT))"
	@echo "  OUT          folder the shards are written to                         ($(OUT))"
	@echo "  PROFILE      full (paper stack, GPU) | cpu (offline stack); default: cpu for sample, full otherwise ($(PROFILE))"
	@echo "  CROP         official (the datasets' own face crops; default for dfew, ferv39k, mafw) | detect (default otherwise) ($(CROP))"
	@echo "  FACE_GPUS, DESCRIBE_GPUS   GPU share of each face / Video-LLaVA actor, e.g. 0.25 and 0.5 to share a card (defaults 0.5, 1)"
	@echo "  DESCRIBER    geometric | videollava | qwen2.5-vl (preprocess: instead of the profile's; describe: $(DESCRIBER)); DESCRIBER_MODEL=hub id or folder, DESCRIBE_BATCH_SIZE=N"
	@echo "  WEIGHTS_DIR  folder holding model weights for PROFILE=full           ($(WEIGHTS_DIR))"
	@echo "  OVERWRITE    1: delete OUT's shards and start over (default: resume)"
	@echo "  FOLD         1..5 | all (MAFW, DFEW); 1 for FERV39k's single split     ($(FOLD))"
	@echo "  MODEL        fineclip-b16 | fineclip-b32 | fineclip-l14 | dferclip-b16 | dferclip-b32 | tiny | tiny-dferclip | tiny-random  ($(MODEL))"
	@echo "  RECIPE       ours | reference (the paper's or reference code's training settings, docs/training.md) ($(RECIPE))"
	@echo "  TRAIN_ARGS   extra trainer options, e.g. TRAIN_ARGS='--set epochs=5 --set lr=1e-3'"
	@echo "  RAY_ADDRESS  an existing Ray cluster to run the pipeline on (empty: local)"
	@echo "  SAMPLE_SEED, CLIPS_PER_CLASS   for make sample                    ($(SAMPLE_SEED), $(CLIPS_PER_CLASS))"
	@echo "  QUICK        1: make bench on smaller sets, into bench/results/quick/"

$(STAMP): requirements.txt pyproject.toml
	@echo ">> creating $(VENV) from requirements.txt (first run only: about 4 minutes; ~7 GB with CUDA torch on Linux)"
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements.txt -e ".[all]"
	touch $@

env: $(STAMP) ## create or update .venv (done automatically by every other target)

lock: ## re-resolve requirements.in into the lock (requirements.txt, environment.yml) in a scratch venv
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements.in
	.lock-venv/bin/python tools/lock.py
	rm -rf .lock-venv

test: $(STAMP) ## run the whole test suite, offline
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q tests

demo: $(STAMP) ## the whole system on the generated sample dataset, in minutes on a CPU; a rerun reuses what is done
	@echo ">> environment: ready in $(VENV)"
	@echo ">> sample dataset (data/sample)"
	$(PY) -m pipeline.sample generate --out data/sample --if-missing
	$(PY) -m pipeline.sample sheet --data data/sample
	@echo ">> preprocessing (PROFILE=cpu) into shards/sample"
	$(PY) -m pipeline.preprocess sample --data-root data/sample --out shards/sample
	@echo ">> training MODEL=tiny on folds 2-5, testing on fold 1"
	$(PY) -m trainer.train --dataset sample --model tiny --fold 1 --shards shards/sample --reuse
	@echo ">> shards: counts, failures, models"
	$(PY) -m pipeline.inspect_shards summary shards/sample
	$(PY) -m pipeline.inspect_shards sheet shards/sample --clip surprise_03 --out runs/sample-surprise_03.png
	@echo ">> predicting a held-out clip from its raw video"
	$(PY) -m trainer.predict --video data/sample/videos/surprise_00.avi --checkpoint runs/sample-tiny-fold1/best.pt
	@echo ">> predicting every held-out (fold 1) clip from its raw video"
	$(PY) -m trainer.predict --manifest data/sample/manifest.csv --partition fold1 \
		--checkpoint runs/sample-tiny-fold1/best.pt --out runs/sample-tiny-fold1/predict-fold1.json
	$(PY) -m trainer.run_summary --shards shards/sample --run runs/sample-tiny-fold1 \
		--predictions runs/sample-tiny-fold1/predict-fold1.json \
		--sheet data/sample/contact_sheet.png --sheet runs/sample-surprise_03.png

manifest: $(STAMP) ## validate DATASET's manifest; with DATA_ROOT, count the clips found there
	$(PY) -m pipeline.preprocess $(DATASET) --data-root "$(DATA_ROOT)" --check

sample: $(STAMP) ## generate the sample dataset into data/sample and its contact sheet (SAMPLE_SEED, CLIPS_PER_CLASS)
	$(PY) -m pipeline.sample generate --out data/sample --seed $(SAMPLE_SEED) --clips-per-class $(CLIPS_PER_CLASS)
	$(PY) -m pipeline.sample sheet --data data/sample

PREPROCESS_ARGS = --data-root "$(DATA_ROOT)" --out "$(OUT)" $(if $(PROFILE),--profile $(PROFILE)) $(if $(CROP),--crop $(CROP)) \
	$(if $(FACE_GPUS),--face-gpus $(FACE_GPUS)) $(if $(DESCRIBE_GPUS),--describe-gpus $(DESCRIBE_GPUS)) \
	$(if $(WEIGHTS_DIR),--weights-dir "$(WEIGHTS_DIR)") $(if $(filter 1 yes true,$(OVERWRITE)),--overwrite)

preprocess: $(STAMP) ## DATASET, DATA_ROOT, OUT, PROFILE, CROP, FACE_GPUS, DESCRIBE_GPUS, RAY_ADDRESS, WEIGHTS_DIR, OVERWRITE=1: videos -> shards
	$(if $(filter sample,$(DATASET)),$(PY) -m pipeline.sample generate --out "$(DATA_ROOT)" --if-missing)
	$(PY) -m pipeline.preprocess $(DATASET) $(PREPROCESS_ARGS)

describe: $(STAMP) ## OUT, DESCRIBER (geometric | videollava): describe finished shards again, keeping the face stage
	$(PY) -m pipeline.describe "$(OUT)" --describer $(DESCRIBER)

train: $(STAMP) ## DATASET, FOLD, MODEL, RECIPE, OUT, TRAIN_ARGS: train on the shards, test on the held-out fold (both protocols)
	$(PY) -m trainer.train --dataset $(DATASET) --model $(MODEL) --fold $(FOLD) --shards "$(OUT)" --set recipe=$(RECIPE) $(TRAIN_ARGS)

ablate: $(STAMP) ## DATASET, MODEL, FOLD, ROWS, TRAIN_ARGS: FineCLIPER's ablation rows (paper Tables 4-9), one run each, into runs/ablation-*.json and .md (resumable)
	$(PY) -m trainer.ablate --dataset $(DATASET) --model $(MODEL) --fold $(FOLD) --shards "$(OUT)" $(if $(ROWS),--rows $(ROWS)) $(TRAIN_ARGS)

zero-shot: $(STAMP) ## DATASET, FOLD, MODEL, OUT: the backbone with no training (class prompts against clips) on the test fold
	$(PY) -m trainer.zero_shot --dataset $(DATASET) --model $(MODEL) --fold $(FOLD) --shards "$(OUT)"

pretrain-tiny: $(STAMP) ## rebuild the shipped tiny-synthetic CLIP from synthetic clip-caption pairs into runs/tiny-synthetic/ (~31 min on 2 cores; docs/tiny-clip.md)
	$(PY) -m trainer.pretrain_tiny --out runs/tiny-synthetic/tiny-synthetic.pt

summary: $(STAMP) ## OUT: a dataset folder's counts, failures, configuration and models
	$(PY) -m pipeline.inspect_shards summary "$(OUT)"

verify: $(STAMP) ## OUT: check a dataset folder against its manifest, index and stats
	$(PY) -m pipeline.verify "$(OUT)"

inspect: $(STAMP) ## OUT, CLIP=<clip id>: contact sheet PNG (+ GIF) of one clip: landmarks, masks, description
	$(PY) -m pipeline.inspect_shards sheet "$(OUT)" $(if $(CLIP),--clip $(CLIP)) --out "$(or $(CLIP),clip).png" --gif "$(or $(CLIP),clip).gif"

eval: $(STAMP) ## CHECKPOINT, [DATASET, FOLD]: a checkpoint on a test fold, or on another dataset
	$(PY) -m trainer.evaluate --checkpoint "$(CHECKPOINT)" $(if $(filter-out sample,$(DATASET)),--dataset $(DATASET) --shards "$(OUT)")

predict: $(STAMP) ## VIDEO, CHECKPOINT: class probabilities for one video (and its description)
	$(PY) -m trainer.predict --video "$(VIDEO)" --checkpoint "$(CHECKPOINT)"

bench: $(STAMP) ## measure pipeline, loader, trainer against baselines (QUICK=1: smaller sets); JSON in bench/results/
	$(PY) bench/run_all.py $(if $(filter 1 yes true,$(QUICK)),--quick)

clean: ## remove .venv and caches (keeps data/ and shards/)
	rm -rf $(VENV) .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
