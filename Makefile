# Two commands set up a fresh machine (see README.md): `make run` and `make test`.
# Both create .venv in the repository root when it is missing and install the project into it.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/quickstart

.PHONY: run test venv clean

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

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
