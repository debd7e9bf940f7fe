# After — the make targets of the README. `make run` and `make test` set up everything
# (configure, a virtual environment, the embedded CouchDB from package-lock.json).

ifeq ($(filter configure help,$(MAKECMDGOALS)),)
-include config.mk
endif

VENV      := .venv
VPY       := $(VENV)/bin/python
# `$(VPY) -P -m after`: -P keeps the current directory off sys.path (see bin/after).
STAMP     := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PYTEST_ARGS ?=
# Test processes (pytest-xdist; each file stays in one, so its shared daemons are shared):
# the tests mostly wait on real daemons and CouchDB, so three keep two cores busy. Files go
# out longest first (tests/slowfirst.py); --no-loadscope-reorder keeps that order (xdist
# would otherwise reorder files by their number of tests, not their time).
TEST_JOBS ?= 3

.PHONY: all setup run test lint bench install uninstall clean distclean help browser

all: setup

help:
	@echo "make run      set up and start the daemon (embedded CouchDB unless configured)"
	@echo "make test     set up and run the test suite"
	@echo "make lint     ruff and mypy"
	@echo "make bench    benchmarks (QUICK=1 for a short run; the CouchDB of AFTER_BENCH_COUCHDB_URL too; SERVERS=embedded,couchdb to choose)"
	@echo "make setup    only set up (venv, embedded CouchDB); with COUCHDB_ADMIN_URL=... in the environment also prepare that CouchDB"
	@echo "make install  install the after command under PREFIX (./configure --prefix=...)"

config.mk: configure
	./configure

$(STAMP): setup.cfg config.mk
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	# --ignore-scripts: sqlite3's install script would download a binary from outside the
	# registry; the LevelDB backend pouchdb-server uses ships its prebuilt binaries.
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

ifeq ($(COUCHDB_URL),)
setup: $(STAMP) $(NODE_STAMP)
else
setup: $(STAMP)
endif
ifneq ($(COUCHDB_ADMIN_URL),)
	$(VPY) -P -m after setup
endif

# The CouchDB URLs hold passwords: they reach `after` through its environment, never on
# a command line (make echoes recipe lines, and `ps` shows the `sh -c` line it runs).
# `after setup` takes the user and password the daemon will use from AFTER_COUCHDB_URL.
setup run: export AFTER_COUCHDB_URL = $(COUCHDB_URL)
setup: export AFTER_COUCHDB_ADMIN_URL = $(COUCHDB_ADMIN_URL)

run: setup
	$(VPY) -P -m after serve

test: setup browser
	$(VPY) -m pytest -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# Debian's Chromium for the browser UI tests (tests/test_ui.py, driven by Playwright; its own
# browser download is never used). Installed only when no working Chromium is found, and only
# as root with apt-get; otherwise this says why and goes on: those tests then skip, saying why.
CHROMIUM_BINS := $(AFTER_TEST_CHROMIUM) chromium chromium-headless-shell
browser:
	@for b in $(CHROMIUM_BINS); do \
	  if command -v "$$b" >/dev/null 2>&1 && "$$b" --version >/dev/null 2>&1; then exit 0; fi; \
	done; \
	if [ "$$(id -u)" != 0 ]; then echo "browser: no Chromium, and not root to install it: the UI tests will be skipped"; exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "browser: no Chromium, and no apt-get to install it: the UI tests will be skipped"; exit 0; fi; \
	echo "browser: installing Debian's chromium for the UI tests"; \
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	  || echo "browser: apt-get could not install chromium: the UI tests will be skipped"

lint: setup
	$(VENV)/bin/ruff check after tests bench
	$(VENV)/bin/mypy

# The bench's CouchDB (an admin URL) comes from AFTER_BENCH_COUCHDB_URL in the environment,
# never on the command line (see above).
bench: setup
	test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install --quiet --disable-pip-version-check -e . -r bench/requirements.txt
	.venv-bench/bin/python bench/run.py $(if $(QUICK),--quick,) $(if $(SERVERS),--servers $(SERVERS),)

install: setup
	$(PYTHON) -m venv $(DESTDIR)$(PREFIX)/lib/after
	$(DESTDIR)$(PREFIX)/lib/after/bin/pip install --quiet --disable-pip-version-check .
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/after
	if [ -d node_modules ]; then cp -a node_modules $(DESTDIR)$(PREFIX)/lib/after/; fi
	cp etc/after.toml README.md $(DESTDIR)$(PREFIX)/share/after/
	# The unit names the installed command and README (its Documentation=) under PREFIX.
	sed 's#/usr/local/#$(PREFIX)/#g' etc/after.service > $(DESTDIR)$(PREFIX)/share/after/after.service
	printf '#!/bin/sh\n: "$${AFTER_COUCHDB_EMBEDDED_SERVER:=$(PREFIX)/lib/after/node_modules/.bin/pouchdb-server}"\n: "$${AFTER_STATE_DIR:=$${XDG_STATE_HOME:-$$HOME/.local/state}/after}"\nexport AFTER_COUCHDB_EMBEDDED_SERVER AFTER_STATE_DIR\nexec $(PREFIX)/lib/after/bin/after "$$@"\n' > $(DESTDIR)$(PREFIX)/bin/after
	chmod 755 $(DESTDIR)$(PREFIX)/bin/after
	@echo "installed $(PREFIX)/bin/after"

uninstall:
	rm -rf $(DESTDIR)$(PREFIX)/lib/after $(DESTDIR)$(PREFIX)/share/after $(DESTDIR)$(PREFIX)/bin/after

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache test-output
	find after tests -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .venv-bench node_modules config.mk *.egg-info
