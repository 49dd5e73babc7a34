# The README's commands. Each one installs what is missing first (scripts/setup.sh).
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: setup test lint demo bench fuzz driver-suites clean

setup:
	@scripts/setup.sh

lint: setup
	$(VENV)/ruff check src tests bench
	$(VENV)/ruff format --check src tests bench
	$(VENV)/mypy src

test: lint
	$(VENV)/pytest $(PYTEST_ARGS)

# The wire fuzzer of `make test` (tests/integration/test_wire_fuzz.py), ten times longer.
fuzz: setup
	TENANTPROXY_FUZZ_CASES=20000 $(VENV)/pytest -x -q -s tests/integration/test_wire_fuzz.py

demo: setup
	$(VENV)/tenantproxy demo

bench: setup
	$(VENV)/python bench/point_select.py
	$(VENV)/python bench/login.py
	$(VENV)/python bench/multiplex.py

# Client libraries' own test suites, straight to MariaDB and through the proxy (bench/README.md).
driver-suites: setup
	$(VENV)/python bench/driver_suites.py

clean:
	rm -rf .venv .tenantproxy .pytest_cache
