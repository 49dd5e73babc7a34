# The README's commands. Each one installs what is missing first (scripts/setup.sh).
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: setup test lint demo bench clean

setup:
	@scripts/setup.sh

lint: setup
	$(VENV)/ruff check src tests bench
	$(VENV)/ruff format --check src tests bench
	$(VENV)/mypy src

test: lint
	$(VENV)/pytest $(PYTEST_ARGS)

demo: setup
	$(VENV)/tenantproxy demo

bench: setup
	$(VENV)/python bench/point_select.py
	$(VENV)/python bench/login.py

clean:
	rm -rf .venv .tenantproxy .pytest_cache
