# pydock: `make demo` builds and runs the example; `make test` runs the whole suite.
# Both install what they need first (Debian packages as root, then a virtualenv in .venv).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
APT_PACKAGES := busybox-static skopeo umoci python3-venv tar gzip xz-utils zstd

.PHONY: install system-packages demo test lint format bench clean

install: $(VENV)/.installed

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q $$missing >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null; }; \
	fi

$(VENV)/.installed: pyproject.toml | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null 2>&1 || true
	# compat mode: a plain .pth path entry, no import-hook finder (about 20 ms off every start)
	$(BIN)/pip install -q -e '.[test,dev]' --config-settings editable_mode=compat
	ln -sf $(abspath $(BIN))/pybuild /usr/local/bin/pybuild
	ln -sf $(abspath $(BIN))/pydock /usr/local/bin/pydock
	touch $@

demo: install
	$(BIN)/pydock bootstrap busybox
	$(BIN)/pybuild -t hello examples/hello
	$(BIN)/pydock run --rm hello
	$(BIN)/pydock images

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest -q

bench: install
	for b in bench/*_bench.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) *.egg-info
