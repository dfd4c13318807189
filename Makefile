# Two commands set up a fresh machine (see README.md): `make run` and `make test`.
# Both create .venv in the repository root when it is missing and install the project into it.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/quickstart

.PHONY: run test check venv clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[dev,onnx]'
	touch $(STAMP)

venv: $(STAMP)

# A short NASNet cell search on the bundled digits (resumes if interrupted), then its best cell
# materialized at full size (NASNet-A CIFAR macro network, 10 classes).
run: $(STAMP)
	$(VENV)/bin/nas search --config configs/quickstart.yaml --out $(RUN_DIR)
	$(VENV)/bin/nas materialize $(RUN_DIR) --out $(RUN_DIR)/best.pt --num-classes 10 --force
	$(VENV)/bin/nas show $(RUN_DIR) --num-classes 10

# The whole suite on two pytest-xdist workers (two, not `-n auto`: a third worker on two cores made the Ray
# tests 6 to 8 times slower), a test file, or tests/conftest.py's ONE_WORKER group of files, to a worker;
# it lists the 15 slowest tests at the end (pyproject.toml's addopts).
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

# What .ci/run checks before the tests: the linter, the formatter and strict types on the core.
check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
