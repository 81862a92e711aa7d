# Every target builds .venv from the lock file when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
UV_VERSION := 0.13.9

.PHONY: venv demo test bench lint lock clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q flows features training serving expectations
	$(BIN)/python -m expectations.docs_assets
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/aduana demo

test: venv
	$(BIN)/pytest -n 2 --durations=20

bench: venv
	$(BIN)/python benchmarks/bench.py --out benchmarks/results.json

lint: venv
	$(BIN)/ruff check .

# Re-resolve pinned versions after editing pyproject.toml dependencies.
lock: venv
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .aduana .pytest_cache
