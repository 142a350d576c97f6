# Thin wrappers around commands you could type by hand. `make help` lists them.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: help venv run test interop lint migration wsdl openapi screenshots bench clean

help:
	@echo "make run        set up and run the service on embedded defaults (SQLite, SMTP sink, demo)"
	@echo "make test       set up and run the whole test suite (without the browser tests:"
	@echo "                make test PYTEST_ARGS='-m \"not browser\"')"
	@echo "make interop    only the interop tests (suite SDK, node-soap, PHP, zeep, suds)"
	@echo "make lint       ruff + mypy"
	@echo "make bench      run the benchmarks in bench/"
	@echo "make migration  regenerate the initial migration from soap_service/tables.py"
	@echo "make wsdl       regenerate the committed WSDLs under wsdl/ (default public URL)"
	@echo "make openapi    regenerate the committed schema/openapi.json (default public URL)"
	@echo "make screenshots regenerate the console screenshots under docs/img/ (chromium)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (Spyne 2.14)"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m soap_service.demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

interop: $(STAMP)
	cd tests/interop && npm ci --no-audit --no-fund
	$(BIN)/python -m pytest tests/interop $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check soap_service tests bench scripts
	$(BIN)/mypy soap_service

migration: $(STAMP)
	$(BIN)/python scripts/make_migration.py

wsdl: $(STAMP)
	$(BIN)/python scripts/write_wsdl.py

openapi: $(STAMP)
	$(BIN)/python scripts/write_openapi.py

screenshots: $(STAMP)
	MC_SCREENSHOTS=docs/img MC_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -p no:cacheprovider \
	  -q tests/browser -k sqlite

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/e2e.py --profile
	$(BIN)/python bench/deliver.py
	$(BIN)/python bench/deliver.py --channel sms --skip-latency
	$(BIN)/python bench/deliver.py --channel push --skip-latency
	$(BIN)/python bench/deliver_sms.py
	$(BIN)/python bench/deliver_push.py

clean:
	rm -rf $(VENV) var build *.egg-info
