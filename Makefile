# Everything is created from a clean checkout: `make setup` builds .venv from the registries.
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
# The embedded default is the project's own `shapes` preset; tiny-random where it is absent.
PRESET ?= $(if $(wildcard vhs/presets/shapes/preset.json),shapes,tiny-random)
BUILD  ?= build
EXPORT := $(BUILD)/$(PRESET)
REPO   ?= $(EXPORT)/model_repository
SOURCES := $(shell find vhs export model_repository -name '*.py' -o -name '*.json' -o -name '*.safetensors')

.PHONY: setup test test-proportions lint preset export serve demo bench bench-quick bench-load bench-served-budget eval-shapes evaluator-robustness clean repo-gpu

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[all,dev]"
	touch $@

test: setup
	$(PYTHON) -m pytest -q -m "not proportions" --durations=15

# The `proportions` benchmark preset served end to end vs the reference pipeline (exports it: minutes).
test-proportions: setup
	$(PYTHON) -m pytest -q -m proportions

lint: setup
	$(VENV)/bin/ruff check vhs export client benchmarks tests model_repository
	$(VENV)/bin/ruff format --check vhs export client benchmarks tests model_repository

clean:
	rm -rf $(BUILD)

# The presets made in code (tiny-random, proportions; vhs/presets/build.py) are built by this, once
# per recipe version, into build/presets; loading one never builds it. `shapes` ships in the package.
CODE_PRESETS := tiny-random proportions
preset: setup
	$(if $(filter $(PRESET),$(CODE_PRESETS)),$(VENV)/bin/vhs-build-preset $(PRESET),@echo "$(PRESET): nothing to build")

# ONNX graphs + Triton model repository of $(PRESET); redone when code or weights change.
export: $(EXPORT)/manifest.json

$(EXPORT)/manifest.json: $(VENV)/.installed $(SOURCES)
	$(if $(filter $(PRESET),$(CODE_PRESETS)),$(VENV)/bin/vhs-build-preset $(PRESET))
	$(VENV)/bin/vhs-export --preset $(PRESET) --output $(EXPORT)

# The main job: real Triton server, one prompt in `vhs` and `clip` mode, images + timing table.
demo: export
	$(PYTHON) -m vhs.client.demo --model-repository $(REPO) --output out/demo --build-dir $(BUILD)/triton

# The served path measured (benchmarks/bench.py): perf_analyzer for every mode x N {1,2,4,8} x
# concurrency {1,2,4,8} with the shipped prompts, the stage split, FLOPs and memory per engine, the
# paper's table, served vs in-process ONNX Runtime; CSV + Markdown + PNG in out/bench (~25 min on
# 2 cores). Each preset of BENCH_PRESETS is exported first; after the first, the paper's point only
# (N = 4, concurrency 1 and 4): `proportions`, where that preset exists, is compute-heavy.
BENCH_PRESETS ?= shapes $(if $(wildcard vhs/presets/proportions.py),proportions)
bench: setup
	for preset in $(BENCH_PRESETS); do $(MAKE) export PRESET=$$preset || exit 1; done
	$(PYTHON) -m vhs.benchmarks.bench --presets $(BENCH_PRESETS) --build $(BUILD) \
		--output out/bench

# The same on a reduced grid, for $(PRESET) only (N {1,4} x concurrency {1,4}, shorter
# windows): < 5 min after the export, proves the harness.
bench-quick: export
	$(PYTHON) -m vhs.benchmarks.bench --quick --presets $(PRESET) --build $(BUILD) --output out/bench/quick

# BUDGET_MS through the real server at concurrency 1 (vhs and clip, 200 requests each): the N the
# budgets chose and the share of requests within their budget; CSV in out/served-budget.
bench-served-budget: export
	$(PYTHON) -m vhs.benchmarks.served_budget --model-repository $(REPO) --output out/served-budget \
		--build-dir $(BUILD)/triton

# On a GPU host with TensorRT (the export image, deploy/Dockerfile.export, runs the same vhs-export):
# the GPU model repository of $(PRESET) in $(EXPORT), under the precision policy (export/precision.py):
# TensorRT plans in GPU_PRECISION, each checked against ONNX Runtime; GPU_BACKEND=onnxruntime_gpu
# writes graphs typed by the policy for ONNX Runtime's CUDA provider (fp32 or fp16).
GPU_BACKEND   ?= tensorrt_plan
GPU_PRECISION ?= fp16
repo-gpu:
	$(VENV)/bin/vhs-export --preset $(PRESET) --output $(EXPORT) --backend $(GPU_BACKEND) \
		--precision $(GPU_PRECISION)

# The first GPU host's proof (docs/gpu-deployment.md), pip packages only, < 10 min: the reference
# pipeline on CUDA in the precision policy vs fp32 on the CPU; the served GPU path vs the CPU server
# (where a GPU tritonserver with its ONNX Runtime backend is present); TensorRT plans vs ONNX Runtime
# (where TensorRT imports). One table; each check skipped with its reason where it cannot run.
.PHONY: gpu-smoke
gpu-smoke: setup
	$(PYTHON) -m vhs.benchmarks.gpu_smoke

# Load and fault figures of the served path (docs/operations.md): steady load, kill -9 of engine stubs
# under load, an overload burst, abandoned requests, hostile inputs, memory; loopback only, ~2 min.
bench-load: export
	$(PYTHON) -m vhs.benchmarks.load --model-repository $(REPO) --build-dir $(BUILD)/triton

# Serve the exported model repository on 127.0.0.1 (gRPC 8001, HTTP 8000, metrics 8002) until Ctrl-C,
# supervised (a dead model is reloaded); admin APIs need the key in $$VHS_ADMIN_KEY (docs/operations.md).
serve: setup
	@test -d $(REPO) || { echo "no model repository at $(REPO): run 'make export PRESET=$(PRESET)' first"; exit 1; }
	$(VENV)/bin/vhs-serve --model-repository $(REPO) --build-dir $(BUILD)/triton

# Score a GenEval-layout folder (<DIR>/00000/metadata.jsonl, samples/0000.png, ...) with the exact
# shapes evaluator; prints the six task scores and the overall score. A folder of correct rendered
# scenes for the evaluation prompts: $(PYTHON) -m vhs.shapes.cli render-reference <folder>
eval-shapes: setup
	@test -n "$(DIR)" || { echo "usage: make eval-shapes DIR=<GenEval-layout folder>" >&2; exit 2; }
	$(PYTHON) -m vhs.shapes.cli score "$(DIR)"

# The evaluator against verdicts by construction on perturbed renders (blur, noise, off-palette
# colour, JPEG, ragged edges, touching objects, cut by the frame, empty images): the README's table.
evaluator-robustness: setup
	$(PYTHON) -m vhs.shapes.robustness --cases 500

# --- the `shapes` generator (issue 6) -----------------------------------------------------------
.PHONY: train-generator eval-teacher eval-generator sample-grid flops

# Train autoencoder -> flow-matching teacher -> one-step student on 2 CPU cores (~3 h 10 min; every
# stage resumes from its checkpoint under build/train) and write the weights into vhs/presets/shapes.
train-generator: setup
	$(PYTHON) -m vhs.train.autoencoder
	$(PYTHON) -m vhs.train.teacher
	$(PYTHON) -m vhs.train.distill
	$(PYTHON) -m vhs.train.assemble

# The many-step teacher (build/train/teacher, 16 ODE steps, guidance 2.5) on the 553 evaluation prompts.
eval-teacher: setup
	$(PYTHON) -m vhs.train.evaluate_teacher

# Best-of-1 and oracle Best-of-4 on the 553 evaluation prompts, six task scores each.
eval-generator: setup
	$(PYTHON) -m vhs.train.evaluate_generator --preset shapes --out $(BUILD)/eval-generator/scores.json

# The model card's sample grid: evaluation prompts (rows) x seeds 0..5 (columns), Best-of-1.
sample-grid: setup
	$(PYTHON) -m vhs.train.evaluate_generator --preset shapes --grid vhs/presets/shapes/sample_grid.png

# Per-candidate FLOPs of every engine and the per-request FLOP ratios of the modes: published models
# vs $(PRESET) (`make flops PRESET=proportions` for the benchmark preset).
flops: preset
	$(PYTHON) -m vhs.benchmarks.flops $(PRESET)

# --- the `shapes` verifiers (docs/training.md) ----------------------------------------------------
.PHONY: verifier-data train-verifier verifier-study generator-study eval-verifiers bench-budget
VERIFIERS := $(BUILD)/train/verifiers
VERIFIER_DATA := $(BUILD)/train/verifier_data
# One thread per process: on 2 cores, two single-threaded processes beat one with two threads.
TRAIN_ENV := OMP_NUM_THREADS=1
DATA_SPLITS := train validation evaluation

# Candidates of the shipped generator for a prompt split, labelled by the shapes evaluator: two
# processes share the shards, each shard is written whole, so an interrupted run resumes. The data
# card (data_card.json) is written once every shard exists (~45 min for all three splits on 2 cores).
# $(call DRAW,ARGS): vhs.train.verifier_data ARGS in two processes sharing the shards; fails if either does.
DRAW = $(TRAIN_ENV) $(PYTHON) -m vhs.train.verifier_data $(1) --shards 0::2 & \
	$(TRAIN_ENV) $(PYTHON) -m vhs.train.verifier_data $(1) --shards 1::2; status=$$?; wait $$! && test $$status -eq 0
$(DATA_SPLITS:%=$(VERIFIER_DATA)/%/data_card.json): $(VERIFIER_DATA)/%/data_card.json: | setup
	$(call DRAW,--split $* --out-dir $(VERIFIER_DATA))
	test -f $@
verifier-data: $(DATA_SPLITS:%=$(VERIFIER_DATA)/%/data_card.json)

# One verifier: stages 1-2 of vhs.train.verifier (the loss and the reader as chosen on validation,
# docs/training.md) from the shared language prior (stage 0, its own target, so that `make -j2`
# trains it once), timed in its metrics.json; a finished verifier is not trained again. Every path
# follows BUILD (`make train-verifier BUILD=/elsewhere` writes nothing under build/).
VERIFIER := $(TRAIN_ENV) $(PYTHON) -m vhs.train.verifier --data-dir $(VERIFIER_DATA) --prior-dir $(VERIFIERS)/llm_prior \
	--clip-tower $(VERIFIERS)/clip_tower
TRAINING_DATA := $(VERIFIER_DATA)/train/data_card.json $(VERIFIER_DATA)/validation/data_card.json
$(VERIFIERS)/llm_prior/config.json: $(VERIFIER_DATA)/train/data_card.json
	$(VERIFIER) --prior-only
$(VERIFIERS)/vhs_l%/metrics.json: $(TRAINING_DATA) $(VERIFIERS)/llm_prior/config.json
	$(VERIFIER) --reads hidden_states_l$* --out $(@D)
$(VERIFIERS)/latent/metrics.json: $(TRAINING_DATA) $(VERIFIERS)/llm_prior/config.json
	$(VERIFIER) --reads denoised_latents --out $(@D)
$(VERIFIERS)/clip_tower/clip_vision/config.json: $(TRAINING_DATA)
	$(TRAIN_ENV) $(PYTHON) -m vhs.train.clip_tower --data-dir $(VERIFIER_DATA) --out $(VERIFIERS)/clip_tower
$(VERIFIERS)/clip/metrics.json: $(VERIFIERS)/clip_tower/clip_vision/config.json $(TRAINING_DATA) $(VERIFIERS)/llm_prior/config.json
	$(VERIFIER) --reads images --out $(@D)

# The shipped verifiers, end to end (`make -j2 train-verifier` trains two at a time): VHS at the
# preset's l* (19, chosen by `make verifier-study`) and both baselines (AE latent; CLIP on the
# project's contrastively pre-trained tower), each with its own LLM (language prior shared); written
# into the preset with their metrics, the data cards and the study where it was run; then the
# validation table they were chosen on.
SPLIT_BLOCK := 19
train-verifier: $(VERIFIERS)/vhs_l$(SPLIT_BLOCK)/metrics.json $(VERIFIERS)/latent/metrics.json $(VERIFIERS)/clip/metrics.json
	$(PYTHON) -m vhs.train.assemble_verifiers --verifiers $(VERIFIERS) --data $(VERIFIER_DATA)
	$(MAKE) eval-verifiers SPLIT=validation

# The study behind the choices, on validation: how much of the outcome each representation carries
# (token-map ceiling, ranking probe and conv probe for h1 .. h19, z_0, pixels), VHS at every stored block, the
# paper's pointwise loss against the ranking loss at l*, a CLIP tower tuned in stage 2, the LLM
# trained in stage 1 too, longer training and a higher learning rate at block 7, fine-tuning batches
# of 8 candidates per prompt instead of all 16 (each verifier), nearby questions and object maps
# (VHS and CLIP), the paper's connector instead of one that reads the prompt (each verifier); then the
# table of every verifier rescored from its weights (study.md) and l* by quality per FLOP at CLIP
# Best-of-2's compute (block_choice.md). Hours on 2 cores; run before `make train-verifier`, whose
# assembly ships these records.
verifier-study: $(TRAINING_DATA) $(VERIFIERS)/llm_prior/config.json
	$(TRAIN_ENV) $(PYTHON) -m vhs.train.readability --data-dir $(VERIFIER_DATA) --conv-probe --out $(VERIFIERS)/readability.json
	for block in 1 5 7 9 19; do $(MAKE) $(VERIFIERS)/vhs_l$$block/metrics.json || exit 1; done
	$(MAKE) $(VERIFIERS)/latent/metrics.json $(VERIFIERS)/clip/metrics.json
	for loss in weighted_xe listwise; do $(VERIFIER) \
		--reads hidden_states_l$(SPLIT_BLOCK) --loss $$loss --out $(VERIFIERS)/vhs_l$(SPLIT_BLOCK)_$$loss || exit 1; done
	$(VERIFIER) --reads images --tune-clip-tower --out $(VERIFIERS)/clip_tuned
	$(VERIFIER) --reads hidden_states_l$(SPLIT_BLOCK) --align-llm --steps 300 600 300 \
		--out $(VERIFIERS)/vhs_l$(SPLIT_BLOCK)_align_llm
	$(VERIFIER) --reads images --align-llm --steps 300 600 300 --out $(VERIFIERS)/clip_align_llm
	$(VERIFIER) --reads hidden_states_l7 --steps 300 1000 1000 --eval-every 250 \
		--out $(VERIFIERS)/vhs_l7_long
	$(VERIFIER) --reads hidden_states_l7 --finetune-lr 2e-3 --out $(VERIFIERS)/vhs_l7_lr2e-3
	$(VERIFIER) --reads hidden_states_l$(SPLIT_BLOCK) --batch 16 8 --out $(VERIFIERS)/vhs_l$(SPLIT_BLOCK)_batch16x8
	$(VERIFIER) --reads denoised_latents --batch 16 8 --out $(VERIFIERS)/latent_batch16x8
	$(VERIFIER) --reads images --batch 16 8 --out $(VERIFIERS)/clip_batch16x8
	$(TRAIN_ENV) $(PYTHON) -m vhs.train.nearby_questions --split train --data-dir $(VERIFIER_DATA)
	$(VERIFIER) --reads hidden_states_l$(SPLIT_BLOCK) --nearby-questions --out $(VERIFIERS)/vhs_l$(SPLIT_BLOCK)_nearby
	$(VERIFIER) --reads images --nearby-questions --out $(VERIFIERS)/clip_nearby
	$(VERIFIER) --reads hidden_states_l$(SPLIT_BLOCK) --object-map-weight 1 --out $(VERIFIERS)/vhs_l$(SPLIT_BLOCK)_objmap
	$(VERIFIER) --reads images --object-map-weight 1 --out $(VERIFIERS)/clip_objmap
	$(VERIFIER) --reads hidden_states_l$(SPLIT_BLOCK) --no-connector-reads-prompt \
		--out $(VERIFIERS)/vhs_l$(SPLIT_BLOCK)_paper_connector
	$(VERIFIER) --reads denoised_latents --no-connector-reads-prompt --out $(VERIFIERS)/latent_paper_connector
	$(VERIFIER) --reads images --no-connector-reads-prompt --out $(VERIFIERS)/clip_paper_connector
	for prompts in 1600 3200; do $(TRAIN_ENV) $(PYTHON) -m vhs.train.readability --data-dir $(VERIFIER_DATA) --no-ceiling --train-prompts $$prompts \
		--representations hidden_states_l$(SPLIT_BLOCK) denoised_latents --out $(VERIFIERS)/scaling_$$prompts.json || exit 1; done
	$(PYTHON) -m vhs.train.verifier_study --data-dir $(VERIFIER_DATA) --verifiers $(VERIFIERS) --out $(VERIFIERS)/study
	$(PYTHON) -m vhs.benchmarks.block_choice --study $(VERIFIERS)/study.json | tee $(VERIFIERS)/block_choice.md

# The generator lever, on validation: the shipped student fine-tuned so that block 7 carries z_0
# (vhs.train.readable_student: an auxiliary token map, each weight and length below), the verifiers'
# validation candidates and first STUDY_PROMPTS training prompts drawn by it, and the ranking probe
# at blocks 7 and 19 and on z_0 against the same probe on the shipped generator's candidates of the
# same prompts; and the token map alone on the shipped student (map_only). ~2 h 20 min on 2 cores;
# the records in $(VERIFIERS)/study_generator.json, which the assembly ships.
READABLE := $(BUILD)/train/readable_student
READABLE_RUNS := 1:1000 3:2000
STUDY_PROMPTS := 1600
PROBE := $(TRAIN_ENV) $(PYTHON) -m vhs.train.readability --no-ceiling --representations hidden_states_l7 \
	hidden_states_l19 denoised_latents
generator-study: $(TRAINING_DATA)
	$(PROBE) --data-dir $(VERIFIER_DATA) --train-prompts $(STUDY_PROMPTS) --out $(READABLE)/shipped_readability.json
	$(TRAIN_ENV) $(PYTHON) -m vhs.train.readable_student --block 7 --map-only --out $(READABLE)/map_only
	for run in $(READABLE_RUNS); do weight=$${run%:*}; steps=$${run#*:}; out=$(READABLE)/w$${weight}_s$${steps}; \
		$(PYTHON) -m vhs.train.readable_student --block 7 --aux-weight $$weight --steps $$steps --out $$out || exit 1; \
		for split in validation train; do \
			$(call DRAW,--split $$split --preset $$out/preset --prompts $(STUDY_PROMPTS) --out-dir $$out/data) || exit 1; \
		done; \
		$(PROBE) --data-dir $$out/data --out $$out/readability.json || exit 1; \
	done
	$(PYTHON) -m vhs.train.readable_student --collect $(READABLE) --out $(VERIFIERS)/study_generator.json

# The evaluation table of the verifiers the preset ships, from its weights alone (the evaluation
# candidates are generated first where absent: minutes), shipped with the split's data card. SPLIT=validation: the table choices were
# made on. The evaluation split is touched for the final table only. PREVIOUS=<an earlier table's
# <split>.json>: each verifier's Best-of-N against it too, paired over the same prompts (a release's change).
SPLIT ?= evaluation
eval-verifiers: $(VERIFIER_DATA)/$(SPLIT)/data_card.json
	$(TRAIN_ENV) $(PYTHON) -m vhs.train.evaluate_verifiers --data-dir $(VERIFIER_DATA) --split $(SPLIT) --out $(BUILD)/eval-verifiers \
		$(if $(PREVIOUS),--previous $(PREVIOUS))
	cp $(BUILD)/eval-verifiers/$(SPLIT).json $(BUILD)/eval-verifiers/$(SPLIT).md vhs/presets/shapes/verifier/training/
	cp $(VERIFIER_DATA)/$(SPLIT)/data_card.json vhs/presets/shapes/verifier/training/data_card_$(SPLIT).json

# The paper's matched-budget table through the served path (CLIP Best-of-2/4/6 request times as the
# budgets), scores from make eval-verifiers; table, CSV and plot in out/budget.
bench-budget: export
	$(PYTHON) -m vhs.benchmarks.budget --model-repository $(REPO) --scores $(BUILD)/eval-verifiers/evaluation.json \
		--output out/budget --build-dir $(BUILD)/triton
