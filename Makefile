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

run: $(STAMP)
	$(VENV)/bin/nas show nasnet-a-cifar --num-classes 10 --plot $(VENV)/nasnet-a-cells.png
	$(VENV)/bin/nas materialize efficientnet-b0 --num-classes 10 --out $(VENV)/efficientnet-b0.pt --force

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
