# The two README commands. Both create .venv and install on a fresh clone ([sim] included, so the
# tiny MetaWorld configuration runs in CI).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: demo test install clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,sim]'
	touch $(STAMP)

install: $(STAMP)

# pytest exits 5 when it collected no test (e.g. a -k filter): not a failure of the project.
test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) || [ $$? -eq 5 ]

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO_DIR)

clean:
	rm -rf $(DEMO_DIR) build *.egg-info
