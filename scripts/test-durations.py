#!/usr/bin/python3
"""Where a pytest run's time went, module by module, from its JUnit XML.

    scripts/test-durations.py build/pytest-junit.xml [N]

prints the N modules (default 25) whose cases took longest in all (setup,
call and teardown, as pytest's JUnit report counts them), with their case
counts and the mean per case.  scripts/test.sh runs it after the suites so
that a CI log says where the time goes.
"""

import collections
import sys
import xml.etree.ElementTree as ET


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    top = int(sys.argv[2]) if len(sys.argv) == 3 else 25
    total, count = collections.Counter(), collections.Counter()
    for case in ET.parse(sys.argv[1]).iter("testcase"):
        module = (case.get("classname") or "?").replace(".", "/") + ".py"
        total[module] += float(case.get("time") or 0)
        count[module] += 1
    whole = sum(total.values())
    print(f"{whole:.0f} s of case time in {sum(count.values())} cases; the {top} longest modules:")
    for module, secs in total.most_common(top):
        print(f"{secs:8.1f} s {100 * secs / whole:5.1f}% {count[module]:5d} cases "
              f"{secs / count[module]:6.2f} s/case  {module}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
