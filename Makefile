# Every target installs what it needs into .venv on first use (a fresh machine has only Python 3.11).
# Each stage takes the variables its page in docs/ names; any other flag goes through
# ARGS="--flag=value ...", the same way for every stage.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=
GPUS ?=
OUT ?= out

# Which TensorFlow `make venv` installs, decided when the Makefile is read (`make -n venv` shows it):
# the GPU build (tensorflow[and-cuda], requirements-gpu.lock) where `nvidia-smi -L` lists a GPU, else
# tensorflow-cpu (requirements.lock). `make venv TF=gpu|cpu` overrides the detection.
TF ?= $(if $(shell nvidia-smi -L 2>/dev/null | grep '^GPU '),gpu,cpu)
$(if $(filter $(TF),gpu cpu),,$(error TF=$(TF): expected TF=gpu or TF=cpu))
TF_WHY := $(if $(filter command line environment,$(origin TF)),TF=$(TF) given,$(if $(filter gpu,$(TF)),nvidia-smi lists a GPU,nvidia-smi lists no GPU))
LOCK := $(if $(filter gpu,$(TF)),requirements-gpu.lock,requirements.lock)
OTHER_TF := $(if $(filter gpu,$(TF)),tensorflow-cpu,tensorflow)
STAMP := $(VENV)/.installed-$(TF)

require = $(if $($(1)),,$(error $(1)=... is required: see README.md and docs/))

.PHONY: venv lock-gpu gpu-check test demo preprocess train index verify-index predict evaluate report synthetic \
        data-service-dispatcher data-service-worker \
        bench bench-preprocess bench-train bench-index bench-embed bench-sampler bench-report bench-scale \
        soak-preprocess soak-preprocess-dask clean

$(STAMP): $(LOCK) setup.py
	@echo "make venv: the $(TF) TensorFlow from $(LOCK) ($(TF_WHY); override with TF=gpu or TF=cpu)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if $(PY) -m pip show -q $(OTHER_TF) 2>/dev/null; then $(PY) -m pip uninstall -q -y $(OTHER_TF); fi
	$(PY) -m pip install -q --disable-pip-version-check -r $(LOCK)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

# Regenerate requirements-gpu.lock from requirements.lock (pip >= 26 resolves it from metadata alone).
lock-gpu:
	test -x build/lock-venv/bin/python || $(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install -q --disable-pip-version-check 'pip>=26'
	build/lock-venv/bin/python tools/gpu_lock.py

# On a GPU host: a short training run on generated data over every visible GPU (exit 2 without a GPU).
gpu-check: $(STAMP)
	$(PY) -m trainer.gpu_check $(ARGS)

# Two pytest processes: the `tfrecord` package and TensorFlow cannot share one (their protos collide).
# tests/bench runs each benchmark's --smoke mode; those that import TensorFlow run in the second.
BENCH_TF_TESTS := tests/bench/test_bench_embed.py tests/bench/test_bench_train.py
test: $(STAMP)
	$(PY) -m pytest tests/unit/pipelines tests/pipeline tests/bench $(addprefix --ignore=,$(BENCH_TF_TESTS))
	$(PY) -m pytest tests/unit/trainer tests/unit/indexer tests/e2e $(BENCH_TF_TESTS)

demo: $(STAMP)
	$(PY) -m demo.run --output_dir="$(OUT)/demo" $(if $(DATA),--data_dir="$(DATA)") $(if $(WEIGHTS),--weights="$(WEIGHTS)") $(ARGS)

synthetic: $(STAMP)
	$(PY) -m pipelines.synthetic --output_dir="$(OUT)/synthetic" $(ARGS)

preprocess: $(STAMP)
	$(call require,CSV)
	$(PY) -m pipelines.preprocess --csv="$(CSV)" --output_dir="$(OUT)" $(ARGS)

train: $(STAMP)
	$(call require,DATA)
	$(PY) -m trainer.train --data_dir="$(DATA)" --output_dir="$(OUT)" $(if $(GPUS),--gpus=$(GPUS)) $(ARGS)

# The training input on other machines (docs/train.md): a dispatcher, then workers, then
# make train ... ARGS=--data_service=grpc://DISPATCHER_HOST:PORT
data-service-dispatcher: $(STAMP)
	$(PY) -m trainer.data_service --role=dispatcher $(if $(PORT),--port=$(PORT)) $(ARGS)

data-service-worker: $(STAMP)
	$(call require,DISPATCHER)
	$(PY) -m trainer.data_service --role=worker --dispatcher=$(DISPATCHER) $(if $(PORT),--port=$(PORT)) $(ARGS)

index: $(STAMP)
	$(call require,MODEL)
	$(call require,DATA)
	$(PY) -m indexer.build --model="$(MODEL)" --data_dir="$(DATA)" --output_dir="$(OUT)" $(ARGS)

# Check every file of an index folder against its manifest now, the local-feature store's segments included.
verify-index: $(STAMP)
	$(call require,INDEX)
	$(PY) -m indexer.store.verify_index --index_dir="$(INDEX)" $(ARGS)

# TEST_CSV=test.csv, or IMAGES=DIR (a folder of photos, id = file stem), or RECORDS=DIR (finished
# `pipelines.preprocess --split=test` output, local or gs://; TEST_CSV then optional: its ids and order).
# PREPROCESS="--runner=dask --dask_workers=2 ..." = flags for the test CSV's preprocessing (each one
# passed as --preprocess_arg); ARGS="--embed_runner=beam --runner=dask ..." = the per-shard prediction job.
predict: $(STAMP)
	$(if $(TEST_CSV)$(IMAGES)$(RECORDS),,$(error TEST_CSV=..., IMAGES=DIR or RECORDS=DIR is required: see docs/index.md))
	$(call require,INDEX)
	$(PY) -m indexer.predict $(if $(TEST_CSV),--test_csv="$(TEST_CSV)") $(if $(IMAGES),--images="$(IMAGES)") $(if $(RECORDS),--test_records="$(RECORDS)") $(foreach a,$(PREPROCESS),--preprocess_arg="$(a)") --index_dir="$(INDEX)" --output_dir="$(OUT)" $(ARGS)

evaluate: $(STAMP)
	$(call require,SUBMISSION)
	$(call require,SOLUTION)
	$(PY) -m indexer.evaluate --submission="$(SUBMISSION)" --solution="$(SOLUTION)" $(if $(filter-out out,$(OUT)),--output_dir="$(OUT)") $(ARGS)

# PRED=predict's output folder; SOLUTION= and NAMES= default to what predict was given
report: $(STAMP)
	$(call require,PRED)
	$(PY) -m indexer.report --predictions="$(PRED)" $(if $(SOLUTION),--solution="$(SOLUTION)") $(if $(NAMES),--landmark_names="$(NAMES)") $(ARGS)

bench: bench-preprocess bench-train bench-index bench-embed bench-sampler bench-report

bench-preprocess: $(STAMP)
	$(PY) -m bench.bench_preprocess $(ARGS)

bench-train: $(STAMP)
	$(PY) -m bench.bench_train $(ARGS)

bench-index: $(STAMP)
	$(PY) -m bench.bench_index $(ARGS)

bench-embed: $(STAMP)
	$(PY) -m bench.bench_embed $(ARGS)
bench-sampler: $(STAMP)
	$(PY) -m bench.bench_sampler $(ARGS)
bench-scale: $(STAMP)
	$(PY) -m bench.bench_scale $(ARGS)

bench-report: $(STAMP)
	$(PY) -m bench.bench_report $(ARGS)

soak-preprocess: $(STAMP)
	$(PY) -m bench.soak_preprocess $(ARGS)

# The same soak on the DirectRunner's multi-processing mode and on a local Dask cluster, side by side.
soak-preprocess-dask: $(STAMP)
	$(PY) -m bench.soak_preprocess --runners=multi_processing,dask $(ARGS)

clean:
	rm -rf "$(OUT)" .pytest_cache
