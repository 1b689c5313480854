# pixbot: `make run` starts the bot, `make test` checks everything (lint, types, tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck bench screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,nanobot]'
	touch $(STAMP)

run: install
	$(BIN)/pixbot run

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

# Two workers: this machine and CI have 2 CPUs, and the suite waits on loopback servers and subprocesses.
# --dist loadfile: a file's tests run on one worker in file order (as without -n), and one worker's
# waits (Discord start/stop, ModelScope polling) overlap the other's CPU work (~110 s vs ~137 s for load).
test: install lint typecheck
	$(BIN)/pytest -n 2 --dist loadfile

bench: install
	$(BIN)/python bench/run.py

# The pictures in docs/web.md, taken by the browser tests (needs chromium).
screenshots: install
	PIXBOT_SCREENSHOTS=docs/images PIXBOT_REQUIRE_BROWSER=1 $(BIN)/pytest -p no:xdist tests/web/test_browser.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
