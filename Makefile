# bikestate: two commands for users (`make demo`, `make test`); `make setup` builds the
# environment they both need. Everything is installed into .venv from nothing.

PYTHON ?= python3
VENV ?= .venv
# Where detectron2 comes from: pypi-mirror (pure-Python sources repacked from the registry
# distribution sal-detectron2==0.7.2) or git (official repository, compiles _C; needs GitHub).
D2_SOURCE ?= pypi-mirror
# Exact pins: these builds are served from local disk on the project's machines.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

VPY := $(VENV)/bin/python
STAMP := $(VENV)/.bikestate-setup-$(D2_SOURCE)
DEMO_DIR ?= output/demo
PYTEST_ARGS ?=
# `make test` runs the suite in this many pytest-xdist processes, each test file in one of them
# (its module fixtures built once); much of the suite waits on subprocesses and start-up, so two
# processes finish in about two thirds of one's time on 2 cores. 0: one process.
PYTEST_WORKERS ?= 2

ifeq ($(filter $(D2_SOURCE),pypi-mirror git),)
$(error unknown D2_SOURCE '$(D2_SOURCE)': use D2_SOURCE=pypi-mirror (default) or D2_SOURCE=git)
endif

.PHONY: setup system-deps test demo clean-venv

setup: $(STAMP)

# Chromium from Debian, for `make test` only: one test opens the failure-analysis page in a real
# browser (Playwright drives it; Playwright's own browser download is not used). Nothing to do
# when it is there. As root with apt-get (CI: a fresh Debian machine) it is installed, and a
# failed install stops the run rather than letting the browser test skip unseen. Otherwise (not
# root, not Debian) one warning, the tests run and that one test is skipped.
system-deps:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make setup: installing chromium (Debian) for the browser test"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else \
	  echo "make setup: warning: chromium is missing and only root can install it with apt-get" \
	    "(sudo apt-get install chromium); the browser test will be skipped" >&2; \
	fi

# The stamp makes a second `make setup` on a ready environment a no-op; it is redone when the
# files that define the environment change.
$(STAMP): setup.py Makefile tools/install_detectron2.py
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install $(TORCH_PINS)
	$(VPY) tools/install_detectron2.py --source $(D2_SOURCE)
	$(VPY) -m pip install -e '.[dev]'
	@rm -f $(VENV)/.bikestate-setup-*
	@touch $@

test: system-deps setup
	$(VPY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: setup
	$(VPY) tools/demo.py --output $(DEMO_DIR)

clean-venv:
	rm -rf $(VENV)
