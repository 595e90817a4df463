# Two commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DATA ?= endcredits-demo

.PHONY: demo test install lint typecheck pg clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of PyTorch first and pinned, so nothing pulls the CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# The demo's corpus: ABC folk tunes bundled in the music21 wheel (its code is not used).
	$(BIN)/pip install --quiet --no-deps music21==10.5.1
	# The portal's browser tests drive Debian's chromium, never a downloaded browser (as root, non-interactive).
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }
	# Chromaprint's fpcalc fingerprints audio works to link re-encoded copies (registry/fingerprints.py).
	command -v fpcalc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libchromaprint-tools; }
	# cairosvg renders SVG drawings through the system's cairo (chromium brings it; installed here if not).
	ldconfig -p | grep -q 'libcairo\.so\.2' || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libcairo2; }
	# The Open Clip Art drawings (7,458 SVGs) for benchmarks/registry.py --images; the tests do not need them.
	test -d /usr/share/openclipart || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openclipart-svg; }
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_DATA)
	$(BIN)/endcredits --data $(DEMO_DATA) demo

pg:
	@pg_isready -h 127.0.0.1 -p 5432 -q || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in 1 2 3 4 5 6 7 8 9 10; do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
	@pg_isready -h 127.0.0.1 -p 5432

test: $(STAMP) pg
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs/gen_cli.py
	$(BIN)/ruff format --check src tests benchmarks docs/gen_cli.py

typecheck: $(STAMP)
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) $(DEMO_DATA) .pytest_cache .mypy_cache
