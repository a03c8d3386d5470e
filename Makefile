# User-facing targets: `make demo` and `make test`. Each builds .venv when it is missing.
# Maintainers: `make lock` resolves the newest versions pyproject.toml allows and writes them to constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := constraints.txt
# The pins of $(LOCK) hold on the Python they were resolved on (its first line names it): a release made
# after they were tested cannot change what `make test` runs. On another Python, pip resolves freely.
PINS = $$($(BIN)/python -c "import sys; v = '%d.%d' % sys.version_info[:2]; print('-c $(LOCK)' if 'Python ' + v + ' ' in open('$(LOCK)').readline() else '')")

.PHONY: demo test lock

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU wheel of torch; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q $(PINS) -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/faceswap demo

test: $(STAMP)
	$(BIN)/python -m pytest

lock:
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	{ $(BIN)/python -c "import sys, datetime; print('# The versions make installs into .venv: resolved together on Python %d.%d on %s.' % (*sys.version_info[:2], datetime.date.today()))"; \
	  echo "# On another Python, pip resolves freely within pyproject.toml's ranges. Run make test before committing a new lock."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^torch=='; } > $(LOCK)
	touch $(STAMP)
