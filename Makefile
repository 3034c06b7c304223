# `make test` and `make demo` set everything up on a fresh machine (Python 3.11, pip).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.netspec-installed

.PHONY: test demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

DEMO_RUN := runs/demo-lenet

demo: $(STAMP)
	$(VENV)/bin/netspec check specs/lenet.yaml
	rm -rf $(DEMO_RUN)
	$(VENV)/bin/netspec train specs/lenet.yaml --data digits --out $(DEMO_RUN)
	$(VENV)/bin/netspec eval $(DEMO_RUN)

bench: $(STAMP)
	$(PY) benchmarks/check_vs_torchinfo.py
	$(PY) benchmarks/build_overhead.py
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache build *.egg-info
