"""scripts/pip_progress.py: what it makes of pip's verbose output (stages, the compile every ~10 %)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pip_progress.py"
_spec = importlib.util.spec_from_file_location("pip_progress", SCRIPT)
assert _spec and _spec.loader
pip_progress = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pip_progress)


def _feed(lines: list[str]) -> tuple[list[str], object]:
    p = pip_progress.Progress(now=0.0)
    out: list[str] = []
    for i, line in enumerate(lines):
        out += p.feed(line, now=float(i))
    return out, p


def test_ninja_compile_reports_every_tenth_and_the_stages() -> None:
    lines = [
        "Obtaining file:///src/faceplate",
        "Collecting llama-cpp-python==0.3.36 (from faceplate==0.1.0)",
        "Building wheels for collected packages: faceplate, llama-cpp-python",
        "  Building wheel for llama-cpp-python (pyproject.toml): started",
        "  *** Configuring CMake...",
        *[f"  [{i}/200] Building CXX object vendor/llama.cpp/src/x{i}.cpp.o" for i in range(1, 201)],
        "  Building wheel for llama-cpp-python (pyproject.toml): finished with status 'done'",
        "Installing collected packages: a, b, llama-cpp-python",
        "Successfully installed a-1 b-2 llama-cpp-python-0.3.36",
    ]
    out, p = _feed(lines)
    text = "\n".join(out)
    assert "resolving and downloading dependencies" in text
    assert "building the llama-cpp-python wheel (compiling llama.cpp: 8-15 min on 2 cores)" in text
    assert "configuring llama.cpp with CMake" in text
    compiled = [m for m in out if "compiling llama.cpp:" in m and "steps" in m]
    assert len(compiled) == 11, compiled  # 0 % (first step) .. 100 %, one line per tenth
    assert "100% (200/200 steps)" in compiled[-1]
    assert "built llama-cpp-python in " in text and "installing 3 packages" in text
    assert "compiled llama-cpp-python" in p.summary(now=300.0)  # type: ignore[attr-defined]


def test_make_style_percentages_and_a_cached_wheel() -> None:
    out, _ = _feed(
        [
            "  Building wheel for llama-cpp-python (pyproject.toml): started",
            *[f"  [{pct:3d}%] Building C object ggml.c.o" for pct in (1, 5, 12, 13, 47, 99, 100)],
        ]
    )
    assert [m.split("compiling llama.cpp: ")[1][:4] for m in out if "so far" in m] == [
        "  1%",
        " 12%",
        " 47%",
        " 99%",
        "100%",
    ]
    out, p = _feed(["Collecting llama-cpp-python==0.3.36", "  Using cached llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"])
    assert any("no compile" in m for m in out)
    assert "nothing compiled" in p.summary(now=1.0)  # type: ignore[attr-defined]


def test_exit_status_is_the_commands_and_the_log_keeps_everything(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "build" / "install.log"
    cmd = [sys.executable, "-c", "import sys; print('Collecting x'); print('ERROR: no such package', flush=True); sys.exit(3)"]
    assert pip_progress.main([str(log), "--", *cmd]) == 3
    assert "Collecting x" in log.read_text()
    captured = capsys.readouterr()
    assert "exit status 3" in captured.err and "ERROR: no such package" in captured.err
    assert pip_progress.main([str(log), "--", sys.executable, "-c", "print('Successfully installed x-1')"]) == 0
    assert "done:" in capsys.readouterr().out
