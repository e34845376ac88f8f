# Two set-up commands (README): `make demo` and `make test`. Both create or reuse .venv.
# The install step re-runs only when pyproject.toml changes (the stamp file is keyed on its hash).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint format bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: pip takes these wheels from the local disk where they exist
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev]'
	# the original YOLOv5 host (pyproject: the yolov5 extra says why --no-deps)
	$(BIN)/python -m pip install -q --no-deps yolov5==7.0.14
	@rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/attnyolo demo

# The whole suite. pytest exits 5 when it collected no test: that is a failure here, never a pass.
test: $(STAMP)
	@$(BIN)/python -m pytest -n 2 --durations=25 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests (exit 5)" >&2; fi; exit $$rc

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check attnyolo tests scripts
	$(BIN)/ruff format --check attnyolo tests scripts

format: $(STAMP)
	$(BIN)/ruff format attnyolo tests scripts
	$(BIN)/ruff check --fix attnyolo tests scripts

bench: $(STAMP)
	$(BIN)/python -m attnyolo.bench modules

clean:
	rm -rf runs .pytest_cache
