# `make test` and `make demo` set everything up on a fresh machine (Python 3.11, pip).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.netspec-installed

.PHONY: test lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# ruff's settings are in pyproject.toml ([tool.ruff])
lint: $(STAMP)
	$(VENV)/bin/ruff check .

DEMO_RUN := runs/demo-lenet

# check → train on digits → export to ONNX → infer on digit PNGs written to disk
demo: $(STAMP)
	$(VENV)/bin/netspec check specs/lenet.yaml
	rm -rf $(DEMO_RUN)
	$(VENV)/bin/netspec train specs/lenet.yaml --data digits --out $(DEMO_RUN)
	$(VENV)/bin/netspec eval $(DEMO_RUN)
	$(VENV)/bin/netspec export $(DEMO_RUN) --onnx -o $(DEMO_RUN)/lenet5.onnx
	$(PY) -m netspec.data.samples digits $(DEMO_RUN)/digits --count 12
	$(VENV)/bin/netspec infer $(DEMO_RUN)/lenet5.onnx $(DEMO_RUN)/digits/*.png --top-k 3

bench: $(STAMP)
	$(PY) benchmarks/check_vs_torchinfo.py
	$(PY) benchmarks/build_overhead.py
	$(PY) benchmarks/train_throughput.py
	$(VENV)/bin/netspec bench specs/lenet.yaml --batch 1,32
	$(VENV)/bin/netspec bench specs/torchvision/resnet18.yaml --batch 1,32

clean:
	rm -rf $(VENV) runs .pytest_cache build *.egg-info
