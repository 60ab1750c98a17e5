# Every target creates or reuses .venv and installs what it needs, pinned by constraints.txt.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed


.PHONY: demo demo-full test test-slow bench bench-peers venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The main job: every slice of the demo at its quick scale (under 3 minutes on 2 cores from a cold cache).
demo: $(STAMP)
	$(VENV)/bin/bbdefense demo --quick --out runs/demo

# Every slice at its full scale (under 10 minutes on 2 cores).
demo-full: $(STAMP)
	$(VENV)/bin/bbdefense demo --out runs/demo-full

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Our own speed tables (a few minutes on 2 cores).
bench: $(STAMP)
	$(PY) benchmarks/oracle_overhead.py
	$(PY) benchmarks/zoo_forward.py --threads 2 --batch 32 --reps 2
	$(PY) benchmarks/decision_linear.py
	$(PY) benchmarks/serve_load.py --quick

# Comparisons with IBM ART, installed by each script into its own venv under .cache/art-venv.
bench-peers: $(STAMP)
	$(PY) benchmarks/attacks_vs_art.py
	$(PY) benchmarks/hsja_speed.py
	$(PY) benchmarks/certify_vs_art.py

clean:
	rm -rf $(VENV) runs .pytest_cache
