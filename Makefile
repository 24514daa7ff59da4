# make search   set up .venv and run the main job (search_spaces/quick.yaml; SPACE=..., NAME=..., ARGS=...)
# make test     set up .venv and run the whole test suite
# make evaluate render figures and the report of the last main job
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
SPACE ?=
NAME ?= quick

.PHONY: setup search evaluate test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "setting up $(VENV) (pip's output: $(VENV)/install.log)"
	@$(PY) -m pip install --upgrade pip > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@$(PY) -m pip install -e ".[test]" >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	touch $@

search: setup
	$(PY) -m aetune.search $(if $(SPACE),--space $(SPACE)) --name $(NAME) $(ARGS)

evaluate: setup
	$(PY) -m aetune.evaluate runs/$(NAME) $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

bench: setup
	$(PY) bench/trainer_vs_bare.py

clean:
	rm -rf runs .pytest_cache
