# Two commands on a fresh machine:
#   make quickstart   convert -> (fine-tune -> predict) -> evaluate on the embedded tiny default
#   make test         the whole test suite, notebooks included
#   make test-fast    the unit tier (no training runs, notebooks or browser): under two minutes
# Both create .venv on first use. On a CPU machine torch comes from the CPU wheel (torch==2.13.0);
# on a GPU machine set TORCH_SPEC to the CUDA build you want, e.g. TORCH_SPEC="torch==2.13.0 --index-url ...".

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: quickstart test test-fast install clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/deepke-llm quickstart $(if $(MODEL),--model $(MODEL),)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/convert.py

clean:
	rm -rf $(VENV) build *.egg-info
