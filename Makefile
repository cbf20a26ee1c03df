# lambdaslim: `make repro` runs the reference pipeline end to end, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
# Stage commands (python, lambdaslim, dvc) must come from the venv, also inside `dvc repro`.
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test data mlflow-ui clean-artifacts reliability

setup: $(VENV)/.installed

# constraints.txt pins the whole resolved set; torch 2.13.0 is the CPU build (other versions pull CUDA).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

data: setup
	$(BIN)/dvc pull data/sst2.dvc

repro: setup
	$(BIN)/dvc repro
	$(BIN)/dvc metrics show

# tests/ and notebooks/ (pytest.ini: testpaths, --nbmake runs each notebook top to bottom)
test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The README's reliability figures: bad input refused, handler fuzzing, kill -9 and resume, concurrent runs
# (real runs on a tiny model built on the spot; ~15 min on 2 cores, RELIABILITY_ARGS=--quick for ~6 min).
reliability: setup
	$(BIN)/python -m bench.bench_reliability $(RELIABILITY_ARGS)

mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

clean-artifacts:
	rm -rf artifacts mlartifacts mlflow.db
