# poolwarden — the two commands a newcomer needs:
#   make demo   the whole system on the simulated pool, in a browser
#   make test   the whole test suite
.PHONY: demo test test-fast lint bootstrap bench clean

VENV := .venv
PY   := $(VENV)/bin/python

demo:
	@bash devtools/bootstrap.sh demo
	@$(PY) -m devtools.demo

# Three workers (tests mostly wait on servers, browsers and subprocesses, so they overlap well on
# two cores), each with its own private PostgreSQL and Redis; a test file stays on one worker, and
# files go out in collection order (tests/conftest.py puts the longest first). Tests
# that judge the whole machine (CPU, load, memory alerts) run alone afterwards, then the deployment
# tests, which converge real systemd containers.
test:
	@bash devtools/bootstrap.sh test
	@$(PY) -m pytest -n 3 --dist loadfile --no-loadscope-reorder --ignore=tests/deploy -m "not exclusive" $(PYTEST_ARGS)
	@$(PY) -m pytest -m exclusive tests/integration $(PYTEST_ARGS) || [ $$? -eq 5 ]  # 5: PYTEST_ARGS left none
	@$(PY) -m pytest tests/deploy $(PYTEST_ARGS)

# Unit tests only (no services started): quick feedback while editing.
test-fast:
	@bash devtools/bootstrap.sh test
	@$(PY) -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

lint:
	@bash devtools/bootstrap.sh test
	@$(VENV)/bin/ruff check agent panel poolsim devtools tests bench

bootstrap:
	@bash devtools/bootstrap.sh test

# Benchmarks (not tests): each prints its figures and the ratio against its reference.
bench:
	@bash devtools/bootstrap.sh bench
	@for b in bench/*.py; do case $$b in */__init__.py) ;; *) echo "== $$b"; $(PY) -m bench.$$(basename $$b .py) || exit 1;; esac; done

clean:
	rm -rf .run $(VENV) *.egg-info
