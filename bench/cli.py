"""The CLI's start: seconds from launching `tenantry` to its first line of output.

Target: under **1 s** for any command, and at most 1.5 times the bare start of Django
(`python -c "import django; django.setup()"` with the same settings) on the same machine.
Run with PYTHONDONTWRITEBYTECODE=1, as some machines do: the installed packages are compiled
at install (`compile-bytecode` in pyproject.toml), so nothing is compiled at each start.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _setup import ROOT, verdict, workdir

COMMANDS = [["db", "list"], ["accounts", "--help"], ["servers", "list"], ["apikeys", "--help"]]
RUNS = 5


def first_output_seconds(command: list[str], env: dict[str, str]) -> float:
    """The median time to the first byte of output (or the end, for a silent command)."""
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout
        proc.stdout.read(1)
        times.append(time.perf_counter() - start)
        proc.communicate()
    return statistics.median(times)


def main() -> None:
    with workdir() as tmp:
        env = {**os.environ, "TENANTRY_DATA_DIR": str(tmp), "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("TENANTRY_DATABASE_URL", None)
        tenantry = str(Path(sys.executable).parent / "tenantry")
        subprocess.run([tenantry, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
        setup = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='tenantry.settings'"
        baseline = first_output_seconds(
            [sys.executable, "-c", setup + "; django.setup(); print(1)"], env
        )
        print(f"baseline: django.setup() and a print: {baseline:.2f} s")
        for args in COMMANDS:
            seconds = first_output_seconds([tenantry, *args], env)
            ok = seconds < 1 and seconds <= 1.5 * baseline
            name = " ".join(args)
            ratio = seconds / baseline
            print(f"tenantry {name:<16} {seconds:.2f} s  ({ratio:.2f}x)  {verdict(ok)}")


if __name__ == "__main__":
    main()
