# make demo  - train a small Keras model with ckptcore checkpoints (installs only what it needs)
# make test  - run the whole test suite (core, backends, the Keras adapter on three backends,
#              multi-worker jobs)
# make bench - run the benchmarks and write benchmarks/results/
# make docs  - build the docs site into site/ (strict: a broken link fails)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
PIP    := $(BIN)/python -m pip
PYTEST := $(BIN)/python -m pytest
export WANDB_MODE ?= offline
export WANDB_SILENT ?= true
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test test-core test-keras test-distributed docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The full development environment: every extra (TensorFlow, JAX, PyTorch, moto, mkdocs ...).
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@echo "== installing the development environment into $(VENV): every Keras backend, W&B, fsspec, moto, mkdocs (several GB; a few minutes the first time)"
	$(PIP) install -c constraints.txt -e ".[dev]"
	touch $(STAMP) $(DEMO_STAMP)

# Only what the demo needs (the demo extra: Keras on JAX, W&B, scikit-learn, the ckptcore command).
$(DEMO_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@echo "== installing what the demo needs into $(VENV): Keras with the JAX backend, W&B, scikit-learn and the ckptcore command (about 850 MB; make test adds the rest)"
	$(PIP) install -c constraints.txt -e ".[demo]"
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} $(BIN)/python docs/examples/demo.py

test: test-core test-keras test-distributed

test-core: $(STAMP)
	$(PYTEST) tests --ignore=tests/adapters --ignore=tests/distributed -q

# Real worker processes on 127.0.0.1, run once: each job sets its own Keras backend
# (the JAX jobs jax, the tf.distribute job tensorflow).
test-distributed: $(STAMP)
	$(PYTEST) tests/distributed -q

test-keras: $(STAMP)
	for backend in tensorflow jax torch; do \
		echo "== Keras adapter tests, KERAS_BACKEND=$$backend"; \
		KERAS_BACKEND=$$backend $(PYTEST) tests/adapters -q || exit 1; \
	done

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache site
