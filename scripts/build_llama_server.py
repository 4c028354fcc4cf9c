"""Build llama.cpp's own C++ server (`llama-server`) from the sources inside the llama-cpp-python
source package Faceplate runs on, so the peer it is compared with (bench/chat_load.py) runs the
very same llama.cpp. The binary is cached outside the clone, one per llama-cpp-python version:
later calls print its path at once.

    python scripts/build_llama_server.py            # prints the binary's path (builds it first if needed)

Needs cmake and a C/C++ toolchain; pip downloads the source package. Flags: the portable x86-64
baseline in scripts/llama-cmake-args, the one `make install` builds llama-cpp-python with.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from pip_progress import MAKE, NINJA  # this folder is on sys.path when run as a script

FLAGS = Path(__file__).with_name("llama-cmake-args")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "faceplate"


def binary_path(version: str) -> Path:
    return cache_dir() / f"llama-server-{version}" / "llama-server"


def say(started: float, text: str) -> None:
    print(f"[llama-server {time.monotonic() - started:5.0f}s] {text}", file=sys.stderr, flush=True)


def compile_with_progress(argv: list[str], started: float) -> None:
    """Run the build, saying how far along it is every ~10 % (Ninja's or make's progress lines)."""
    next_pct, tail = 0, []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = [*tail[-40:], line]
            if m := NINJA.match(line):
                pct = 100 * int(m.group(1)) // max(int(m.group(2)), 1)
            elif m := MAKE.match(line):
                pct = int(m.group(1))
            else:
                continue
            if pct >= next_pct:
                next_pct = pct - pct % 10 + 10
                say(started, f"  compiling: {pct:3d}%")
    if proc.returncode:
        sys.stderr.writelines(tail)
        raise SystemExit(f"building llama-server failed ({proc.returncode})")


def build(version: str, target: Path) -> None:
    started = time.monotonic()
    if shutil.which("cmake") is None:
        raise SystemExit("cmake is needed to build llama-server (Debian: apt-get install cmake)")
    with tempfile.TemporaryDirectory(prefix="llama-server-") as tmp:
        work = Path(tmp)
        say(started, f"downloading the llama-cpp-python {version} source package ...")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", str(work)]
            + [f"llama-cpp-python=={version}"],
            check=True,
        )
        (sdist,) = work.glob("llama_cpp_python-*.tar.gz")
        with tarfile.open(sdist) as tar:
            tar.extractall(work, filter="data")
        (src,) = work.glob("llama_cpp_python-*/vendor/llama.cpp")
        flags = shlex.split(FLAGS.read_text())
        say(started, "configuring llama.cpp (cmake) ...")
        configure = ["cmake", "-S", str(src), "-B", str(work / "build"), "-DCMAKE_BUILD_TYPE=Release"]
        # One static binary: the cache holds a file that runs alone (no libllama*.so beside it).
        configure += [
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DBUILD_SHARED_LIBS=OFF",
            *flags,
        ]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        subprocess.run(configure, check=True, stdout=subprocess.DEVNULL)
        jobs = str(os.cpu_count() or 2)
        say(started, f"compiling llama-server with {jobs} jobs (about 6-10 min on 2 cores) ...")
        compile_with_progress(["cmake", "--build", str(work / "build"), "--target", "llama-server", "-j", jobs], started)
        (built,) = (work / "build").rglob("bin/llama-server")
        subprocess.run([str(built), "--version"], check=True, capture_output=True)  # it runs on its own
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        shutil.copy2(built, partial)
        partial.replace(target)  # a reader sees no binary or a whole one
    say(started, f"built {target}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", default=None, help="llama-cpp-python version (default: the installed one)")
    args = ap.parse_args(argv)
    version = args.version or importlib.metadata.version("llama-cpp-python")
    target = binary_path(version)
    if not target.exists():
        build(version, target)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
