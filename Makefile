# Everything a fresh machine needs: `make run` (set up, then start the daemon) and `make test`.
SHELL := /bin/bash
# The distribution's interpreter when it is recent enough: Debian's (static, PGO) ran the daemon's
# hot path ~30% faster than a default pyenv build (shared libpython) here, and starts in a third of
# the time. docs/benchmarks.md names the interpreter it measured.
PYTHON ?= $(shell /usr/bin/python3 -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && echo /usr/bin/python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
QWEN_VERSION := 0.24.4
QWEN_PREFIX := $(VENV)/qwen-code
QWEN_CLI := $(QWEN_PREFIX)/node_modules/@qwen-code/qwen-code/cli.js
PYTEST_ARGS ?=
# TypeScript (pinned in package.json/package-lock.json) checks the browser JS; nothing is built
JS_DEPS := node_modules/.installed

.PHONY: install run test test-deps lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(QWEN_CLI):
	@command -v npm >/dev/null || { echo "npm (Node.js >= 20) is needed to install Qwen Code" >&2; exit 1; }
	npm install --silent --no-audit --no-fund --prefix $(QWEN_PREFIX) @qwen-code/qwen-code@$(QWEN_VERSION)
	@# the bundled ripgrep arrives without its execute bit; Qwen then falls back to a slow search
	find $(QWEN_PREFIX)/node_modules/@qwen-code/qwen-code/vendor -type f -name rg -exec chmod +x {} +
	test -f $@

$(JS_DEPS): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js >= 20) is needed to type-check the browser JS" >&2; exit 1; }
	npm ci --loglevel=error --no-audit --no-fund
	touch $@

## install: virtualenv, Python packages, and the pinned Qwen Code (inside .venv)
install: $(VENV)/.installed $(QWEN_CLI)
	@# compile the package's bytecode as a regular pip install would: with PYTHONDONTWRITEBYTECODE set,
	@# an editable install otherwise recompiles every module on each start (~70 ms here)
	@$(BIN)/python -m compileall -q qwen_daemon

## run: install, then start the daemon in the background and print its URL
run: install
	@# already running is fine: say where it is (url exits non-zero when nothing runs)
	@$(BIN)/qwen-daemon start || $(BIN)/qwen-daemon url

## test: install, add what the tests need, then run the whole suite
test: install test-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The Debian tools the service and packaging tests use: installed only when one is missing and
# only as root with apt (elsewhere the tests that need them skip, saying why; CI fails instead).
# The browser tests drive Debian's chromium (Playwright's own browser download is not used).
TEST_TOOLS := xmllint:libxml2-utils dpkg-buildpackage:dpkg-dev dh:debhelper \
	systemd-analyze:systemd unshare:util-linux \
	chromium:chromium
test-deps:
	@missing=$$(for t in $(TEST_TOOLS); do command -v $${t%%:*} >/dev/null || echo $${t#*:}; done; \
		/usr/bin/python3 -m pip --version >/dev/null 2>&1 || echo python3-pip); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "not installed, the tests that need them will skip: $$missing"; fi

## lint: ruff and mypy (strict on the package, the tests and the benchmarks alike), tsc over the browser JS
lint: install $(JS_DEPS)
	$(BIN)/ruff check qwen_daemon tests bench
	$(BIN)/ruff format --check qwen_daemon tests bench
	$(BIN)/mypy
	node_modules/.bin/tsc -p tsconfig.json
	node_modules/.bin/tsc -p tsconfig.sw.json

## bench: measurements side by side with `qwen serve`; prints tables, writes docs/benchmarks.md + PNG
bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	@# the light measurements first: the real-Qwen ones leave the machine busy for a while
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/relay.py
	$(BIN)/python bench/sessions.py
	$(BIN)/python bench/push_latency.py
	$(BIN)/python bench/idle_memory.py
	$(BIN)/python bench/first_agent.py
	$(BIN)/python bench/report.py

clean:
	rm -rf $(VENV) build dist *.egg-info node_modules
