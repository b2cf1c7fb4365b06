# ross3d: two commands on a fresh machine -- `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ross3d-installed
APT_PACKAGES := libusb-1.0-0 default-jre-headless
DEMO_DIR ?= runs/demo
MODEL ?= $(DEMO_DIR)/checkpoints/final
PYTEST_ARGS ?=
FLOORS_VENV ?= .venv-floors

.PHONY: setup system-deps test test-fast test-floors demo eval bench clean-demo

setup: $(STAMP)

# System libraries: open3d's wheel needs libusb at import time, METEOR needs a Java runtime.
system-deps:
	@missing=""; \
	ldconfig -p | grep -q 'libusb-1.0.so.0' || missing="$$missing libusb-1.0-0"; \
	command -v java >/dev/null 2>&1 || missing="$$missing default-jre-headless"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing system packages:$$missing -- run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml | system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	DS_BUILD_OPS=0 $(PY) -m pip install -q -e ".[dev,ray]"
	@touch $(STAMP)

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# A quick subset (under a minute of CPU): pure unit tests, no subprocess, JVM, DeepSpeed or training run.
FAST_TESTS := tests/test_chat.py tests/test_config_tree.py tests/test_eval_metrics.py tests/test_model_parts.py \
	tests/test_sampler.py tests/test_sens.py tests/test_scene.py tests/test_render.py tests/test_cache_store.py \
	tests/test_cache_units.py tests/test_prep_scannet_units.py tests/test_prep_qa.py tests/test_prep_qa_problems.py \
	tests/test_safe_pickle.py tests/test_docs.py tests/test_packaging.py tests/test_tokenizer.py \
	tests/test_eval_baselines.py
FAST_SELECT := -k "not pycocoevalcap and not cli and not jvm and not meteor"
test-fast: setup
	$(VENV)/bin/pytest $(FAST_TESTS) $(FAST_SELECT) $(PYTEST_ARGS)

# The declared dependency floors: a separate venv with every lower bound of pyproject.toml installed exactly
# (constraints/floors.txt), then the fast tests. Slow (a full install); not part of `make test`. DeepSpeed's JIT ops
# are built into the floors venv, so the two venvs never rebuild each other's.
test-floors: system-deps
	@test -x $(FLOORS_VENV)/bin/python || $(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install -q --upgrade pip
	$(FLOORS_VENV)/bin/python -m pip install -q -c constraints/floors.txt "$(TORCH_SPEC)"
	DS_BUILD_OPS=0 $(FLOORS_VENV)/bin/python -m pip install -q -c constraints/floors.txt -e ".[dev,ray]"
	TORCH_EXTENSIONS_DIR=$(abspath $(FLOORS_VENV))/torch_extensions $(FLOORS_VENV)/bin/pytest $(FAST_TESTS) \
	    $(FAST_SELECT) $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/python -m ross3d_cli.demo --out $(DEMO_DIR)

eval: setup
	$(VENV)/bin/ross3d eval run --benchmark all --checkpoint $(MODEL) --cache $(DEMO_DIR)/cache \
	    --samples $(DEMO_DIR)/prep/samples.parquet --out $(DEMO_DIR)/results --restart

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-demo:
	rm -rf $(DEMO_DIR)
