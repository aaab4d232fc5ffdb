set shell := ["bash", "-euo", "pipefail", "-c"]

default: test

# install the package with the development extras (editable)
install:
    python -m pip install -e ".[dev]"

# the first thing to run: a few jobs on the embedded SQLite store
demo:
    asyncjobs demo

fmt:
    ruff check --fix . && ruff format .

lint:
    ruff check . && ruff format --check . && mypy

# lint, then the whole suite (slow soak tests included)
test *args: lint
    pytest {{args}}

bench *args:
    python -m benchmarks {{args}}

ci:
    bash .ci/run
