# Quorum: `make serve` runs the service, `make test` runs the whole test suite.
# Both set everything up on a bare machine first (virtualenv, install, database schema).

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
INSTALLED = $(VENV)/.installed

.PHONY: install serve test bench lint clean

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Quorum needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# This machine's pip config names local mirrors that may be absent; drop those warnings.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 \
		| { grep -v '^WARNING: Location .* is ignored' || true; }
	touch $(INSTALLED)

install: $(INSTALLED)

serve: install
	$(BIN)/quorum db upgrade
	$(BIN)/quorum serve --host 127.0.0.1 --port 8000

test: install
	$(BIN)/python -m pytest

bench: install
	for script in bench/*.py; do case $$script in */_*) continue;; esac; $(BIN)/python $$script --quick; done

lint: install
	$(BIN)/ruff check orchestrator connectors quality billing migrations tests bench

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
