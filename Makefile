# The two README commands. Both create .venv and install on a fresh clone ([sim] included, so the
# tiny MetaWorld configuration runs in CI).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LEROBOT_STAMP := $(VENV)/.lerobot
DEMO_DIR ?= demo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: demo test install clean figures

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,sim]'
	touch $(STAMP)

# The real LeRobot for tests/test_integrations_lerobot.py. lerobot 0.4.4 pins torch<2.11 and
# transformers<5 (hralign runs torch 2.14 / transformers 5), so its wheel goes in without dependencies,
# then only the modules its ACT/Diffusion code imports, pinned; none of them moves torch, torchvision
# or transformers (`datasets` also without dependencies: its own pins would downgrade huggingface_hub).
$(LEROBOT_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --no-deps lerobot==0.4.4 datasets==4.8.5
	$(BIN)/pip install --quiet draccus==0.10.0 einops==0.8.2 diffusers==0.35.2 dill==0.4.1 multiprocess==0.70.19 \
		pandas==3.1.1 httpx==0.28.1 requests==2.34.2 xxhash==4.1.0 pyserial==3.5 deepdiff==8.6.2
	touch $(LEROBOT_STAMP)

install: $(STAMP) $(LEROBOT_STAMP)

# Every test, the ones marked slow included (DDP equivalence under torchrun / accelerate launch,
# sharding, kill-and-resume, UMAP): ~9 min on 2 cores, inside CI's 25. A bare `pytest` keeps
# setup.cfg's `-m "not slow"` for a quicker loop while editing.
# pytest exits 5 when it collected no test (e.g. a -k filter): not a failure of the project.
test: $(STAMP) $(LEROBOT_STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow" $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The v2 figures (success and its 95% interval per row and protocol) from the committed results; runs nothing else.
V2_RESULTS := benchmarks/results/metaworld-v2/full-preset-seed0 benchmarks/results/metaworld-v2/full-preset-seed1
figures: $(STAMP)
	for d in $(V2_RESULTS); do $(BIN)/hralign bench metaworld-v2 --out $$d --figure || exit $$?; done

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO_DIR)

clean:
	rm -rf $(DEMO_DIR) build *.egg-info
