# Every target creates or reuses .venv and installs what it needs, pinned by constraints.txt.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed


.PHONY: demo demo-full lint test test-slow bench bench-peers venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[all,test]'
	touch $(STAMP)

# The main job: every slice of the demo at its quick scale (under 3 minutes on 2 cores from a cold cache).
demo: $(STAMP)
	$(VENV)/bin/bbdefense demo --quick --out runs/demo

# Every slice at its full scale (under 10 minutes on 2 cores).
demo-full: $(STAMP)
	$(VENV)/bin/bbdefense demo --out runs/demo-full

# Static checks (about 20 s of CPU; mypy and import-linter cache their work): style and likely bugs (ruff), types
# (mypy), and the layers contract between packages (import-linter, see docs/DEVELOPING.md "Checks").
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src/bbdefense
	$(VENV)/bin/lint-imports

test: $(STAMP) lint
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Our own speed tables (a few minutes on 2 cores).
bench: $(STAMP)
	$(PY) benchmarks/oracle_overhead.py
	$(PY) benchmarks/zoo_forward.py --threads 2 --batch 32 --reps 2
	$(PY) benchmarks/decision_linear.py
	$(PY) benchmarks/serve_load.py --quick

# Comparisons with IBM ART, installed once into .cache/art-venv by benchmarks/_art_env.py.
# The commands whose tables are quoted in docs/attacks.md, docs/attacks-decision-whitebox.md, docs/certification.md
# and docs/privacy.md (about 20 minutes on 2 cores; run them on a quiet machine).
bench-peers: $(STAMP)
	$(PY) benchmarks/attacks_vs_art.py --budget 1000 --simba-n 50 --simba-iters 100 --simba-freq 28
	$(PY) benchmarks/hsja_speed.py --n 20 --iters 10 --art-iters 10,30
	$(PY) benchmarks/certify_vs_art.py --images 10 --n0 100 --n 2000 --batch-size 100 --art-batch-sizes 32,100 --repeats 1
	$(PY) benchmarks/mia_vs_art.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
