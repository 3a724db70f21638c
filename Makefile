# Every target installs what it needs into .venv on first use (a fresh machine has only Python 3.11).
# Each stage takes the variables its page in docs/ names; any other flag goes through
# ARGS="--flag=value ...", the same way for every stage.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
GPUS ?= 1
OUT ?= out

require = $(if $($(1)),,$(error $(1)=... is required: see README.md and docs/))

.PHONY: venv test demo preprocess train index predict evaluate synthetic \
        bench bench-preprocess bench-train bench-index bench-embed bench-sampler bench-scale soak-preprocess soak-preprocess-dask clean

$(STAMP): requirements.lock setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)

# Two pytest processes: the `tfrecord` package and TensorFlow cannot share one (their protos collide).
test: $(STAMP)
	$(PY) -m pytest tests/unit/pipelines tests/pipeline tests/bench
	$(PY) -m pytest tests/unit/trainer tests/unit/indexer tests/e2e

demo: $(STAMP)
	$(PY) -m demo.run --output_dir=$(OUT)/demo $(if $(DATA),--data_dir=$(DATA)) $(if $(WEIGHTS),--weights=$(WEIGHTS)) $(ARGS)

synthetic: $(STAMP)
	$(PY) -m pipelines.synthetic --output_dir=$(OUT)/synthetic $(ARGS)

preprocess: $(STAMP)
	$(call require,CSV)
	$(PY) -m pipelines.preprocess --csv=$(CSV) --output_dir=$(OUT) $(ARGS)

train: $(STAMP)
	$(call require,DATA)
	$(PY) -m trainer.train --data_dir=$(DATA) --output_dir=$(OUT) --gpus=$(GPUS) $(ARGS)

index: $(STAMP)
	$(call require,MODEL)
	$(call require,DATA)
	$(PY) -m indexer.build --model=$(MODEL) --data_dir=$(DATA) --output_dir=$(OUT) $(ARGS)

# TEST_CSV=test.csv, or IMAGES=DIR (a folder of photos, id = file stem)
predict: $(STAMP)
	$(if $(TEST_CSV)$(IMAGES),,$(error TEST_CSV=... or IMAGES=DIR is required: see docs/index.md))
	$(call require,INDEX)
	$(PY) -m indexer.predict $(if $(TEST_CSV),--test_csv=$(TEST_CSV)) $(if $(IMAGES),--images=$(IMAGES)) --index_dir=$(INDEX) --output_dir=$(OUT) $(ARGS)

evaluate: $(STAMP)
	$(call require,SUBMISSION)
	$(call require,SOLUTION)
	$(PY) -m indexer.evaluate --submission=$(SUBMISSION) --solution=$(SOLUTION) $(if $(filter-out out,$(OUT)),--output_dir=$(OUT)) $(ARGS)

bench: bench-preprocess bench-train bench-index bench-embed bench-sampler

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

soak-preprocess: $(STAMP)
	$(PY) -m bench.soak_preprocess $(ARGS)

# The same soak on the DirectRunner's multi-processing mode and on a local Dask cluster, side by side.
soak-preprocess-dask: $(STAMP)
	$(PY) -m bench.soak_preprocess --runners=multi_processing,dask $(ARGS)

clean:
	rm -rf $(OUT) .pytest_cache
