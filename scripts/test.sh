#!/usr/bin/env bash
# Set up (if needed) and run the linter and the test suite. Extra arguments go to pytest.
source "$(dirname "$0")/_env.sh"
ruff check .
python -m pytest -q "$@"
