#!/bin/sh
# Every test: formatting, unit tests (criterion), the fuzz smoke, then the
# integration and parity suites (pytest), whose summary line ends the run.
set -eu
cd "$(dirname "$0")/.."

echo "== clang-format check"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror

echo "== unit tests (criterion)"
(cd build && ctest --output-on-failure -j2)

echo "== fuzz smoke"
scripts/fuzz.sh smoke

echo "== integration and parity tests (pytest)"
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration parity
