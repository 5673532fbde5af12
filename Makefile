# One command each: `make up` runs the stack and the demo from a fresh clone; `make test` runs every check.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install install-test up demo test lint clean app no-node

# What mhogo needs to run, and nothing more: no browser, no test tools. The farmer's app too, when Node is there.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: this version is the CPU build; anything else pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	touch $@

# The farmer's app (app/): built by npm from its lockfile into app/dist, which the API serves at /app/. Again only when
# a file of app/ changed. Without Node 20 and npm, mhogo runs all the same and /app/ answers 503 with how to build it.
APP_SOURCES := $(shell find app \( -name node_modules -o -name dist \) -prune -o -type f -print 2>/dev/null)
HAVE_NODE := $(shell command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && echo yes)

app: app/dist/index.html

app/dist/index.html: $(APP_SOURCES) $(wildcard schemas/catalogue/*.json)
	@if [ -f app/package.json ]; then cd app && npm ci --no-audit --no-fund && npm run build; \
	else echo "app/package.json not found: no farmer's app to build"; fi

ifeq ($(HAVE_NODE),yes)
install: app
else
install: no-node
endif

no-node:
	@echo "note: node and npm were not found, so the farmer's app is not built and /app/ answers 503 until it is:"
	@echo "      install Node 20 (or newer) with npm, then run 'make app'."

# The test tools as well, and Chromium with its driver from Debian, for the browser tests (as root, or through sudo),
# with a colour emoji font, so that the app's language flags show in its screenshots as they do on a phone.
install-test: $(VENV)/.installed-test

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	command -v chromium >/dev/null && command -v chromedriver >/dev/null && fc-list | grep -q "Noto Color Emoji" || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-upgrade chromium chromium-driver \
			fonts-noto-color-emoji; }
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

up: install
	$(BIN)/mhogo up --demo

test: install-test app lint
	# The farmer's app's own tests (node's test runner), then the rest. Two test processes, each test file in one of
	# them: most files wait on services and subprocesses. The slowest tests are listed at the end, to keep CI within
	# its 15 minutes. The browser tests need the app built (`app` above: Node 20 and npm).
	cd app && npm test
	$(BIN)/pytest -n 2 --dist loadfile --durations 15

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
