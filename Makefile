# Two entry points (see README): `make reproduce` runs the main job, `make test` runs the test suite.
# Each creates or reuses the virtual environment in .venv and installs what it needs itself.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: install system-data wordnet reproduce test test-slow shape bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

# Debian packages holding the embedded default's data (corpus, WordNet, two image collections).
system-data:
	bash scripts/install_system_data.sh all

wordnet:
	bash scripts/install_system_data.sh wordnet

reproduce: install system-data
	$(PY) -m mmlightning reproduce --config configs/reproduce.yaml

test: install wordnet
	$(PY) -m pytest -q

# The slow tests: real Debian data, the paper setting on stand-ins, DDP, kill + resume, stage reruns, and the
# example paths of README / docs / configs, which must exist after the main job (hence reproduce first).
test-slow: reproduce
	$(PY) -m pytest -q -m slow

# The longest modules and functions, import cycles and imports against the data order (standard library only).
shape:
	$(PYTHON) scripts/code_shape.py --top 10

clean:
	rm -rf $(VENV) build *.egg-info
