#!/usr/bin/env python3
"""Run a verbose ``pip install`` and print a short account of it: the stage it is in, the
llama.cpp compile every ~10 % with elapsed time, and a summary. pip's full output goes to a log
file; when pip fails, the log's tail is printed. The exit status is pip's.

    python scripts/pip_progress.py build/install.log -- .venv/bin/python -m pip install -v -e '.[dev]'

Why: a plain ``pip install`` is silent for the 8-15 minutes llama.cpp compiles on 2 cores, and
``pip -v`` prints thousands of lines. CMake's build lines (``[12/310] Building ...`` with Ninja,
``[ 45%] Building ...`` with Makefiles) appear only in verbose output, so pip runs with ``-v``
and this filter keeps what a person needs. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

# Ninja: "[12/310] Building C object ..."; Makefiles: "[ 45%] Building C object ...".
NINJA = re.compile(r"^\s*\[(\d+)/(\d+)\]\s")
MAKE = re.compile(r"^\s*\[\s*(\d+)%\]\s")
WHEEL_START = re.compile(r"Building (wheel|editable) for (\S+) \(.*\): started")
WHEEL_DONE = re.compile(r"Building (wheel|editable) for (\S+) \(.*\): finished with status '(\w+)'")
COLLECT = re.compile(r"^(Collecting|Processing|Requirement already satisfied:|Obtaining) ")
TAIL_LINES = 60
SLOW = {"llama-cpp-python": "compiling llama.cpp: 8-15 min on 2 cores"}


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """Turns pip's verbose lines into a few progress messages (``feed`` returns what to print)."""

    def __init__(self, now: float | None = None) -> None:
        self.started = time.monotonic() if now is None else now
        self.stage = ""
        self.packages = 0  # requirements pip has looked at while resolving
        self.building: str | None = None  # the wheel being built
        self.wheel_started = 0.0
        self.next_pct = 0  # the compile's next 10 % mark to report
        self.compiled: list[str] = []  # wheels whose build ran a CMake compile

    def _msg(self, now: float, text: str) -> str:
        return f"[install {_clock(now - self.started):>6}] {text}"

    def _enter(self, now: float, stage: str, text: str | None = None) -> list[str]:
        if stage == self.stage:
            return []
        self.stage = stage
        return [self._msg(now, text or stage)]

    def feed(self, line: str, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        if m := WHEEL_START.search(line):
            kind, name = m.groups()
            self.building, self.wheel_started, self.next_pct = name, now, 0
            what = "faceplate itself (editable)" if kind == "editable" else f"the {name} wheel"
            extra = f" ({SLOW[name]})" if name in SLOW else ""
            self.stage = f"build {name}"
            return [self._msg(now, f"building {what}{extra} ...")]
        if m := WHEEL_DONE.search(line):
            _, name, status = m.groups()
            self.building = None
            return [self._msg(now, f"built {name} in {_clock(now - self.wheel_started)} ({status})")]
        if self.building:
            return self._build_line(line, now)
        if "Using cached llama_cpp_python-" in line and line.rstrip().endswith(".whl"):
            return [self._msg(now, "llama-cpp-python: using the wheel pip built and cached earlier (no compile)")]
        if COLLECT.match(line):
            self.packages += 1
            out = self._enter(now, "resolve", "resolving and downloading dependencies ...")
            if self.packages % 50 == 0:
                out.append(self._msg(now, f"  {self.packages} requirements looked at so far"))
            return out
        if line.startswith("Installing collected packages:"):
            n = line.count(",") + 1
            return self._enter(now, "install", f"installing {n} packages into the virtual environment ...")
        if line.startswith("Successfully installed"):
            return [self._msg(now, f"installed ({line.count(' ') - 1} packages changed)")]
        if line.startswith("ERROR:"):
            return [line.rstrip()]
        return []

    def _build_line(self, line: str, now: float) -> list[str]:
        if "*** Configuring CMake" in line:
            return [self._msg(now, f"  configuring {self._project()} with CMake ...")]
        done = total = None
        if m := NINJA.match(line):
            done, total = int(m.group(1)), int(m.group(2))
            pct = 100 * done // max(total, 1)
        elif m := MAKE.match(line):
            pct = int(m.group(1))
        else:
            return []
        if self.building and self.building not in self.compiled:
            self.compiled.append(self.building)
        if pct < self.next_pct:
            return []
        self.next_pct = pct - pct % 10 + 10
        steps = f" ({done}/{total} steps)" if total else ""
        return [self._msg(now, f"  compiling {self._project()}: {pct:3d}%{steps}, {_clock(now - self.wheel_started)} so far")]

    def _project(self) -> str:
        return "llama.cpp" if self.building == "llama-cpp-python" else str(self.building)

    def summary(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        if self.compiled:
            note = f"compiled {', '.join(self.compiled)}"
        else:
            note = "nothing compiled (llama-cpp-python's wheel was cached or already installed)"
        return self._msg(now, f"done: {note}")


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    log_path, cmd = Path(argv[0]), argv[2:]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    progress = Progress()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    print(progress._msg(progress.started, f"running {' '.join(cmd)} (full log: {log_path})"), flush=True)
    with (
        log_path.open("w", encoding="utf-8") as log,
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1) as proc,
    ):
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                tail.append(line)
                for msg in progress.feed(line):
                    print(msg, flush=True)
        except KeyboardInterrupt:
            proc.terminate()
        rc = proc.wait()
    if rc != 0:
        print(f"\npip failed (exit status {rc}); the last {len(tail)} lines of {log_path}:\n", file=sys.stderr)
        sys.stderr.write("".join(tail))
        return rc
    print(progress.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
