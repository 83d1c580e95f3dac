#!/usr/bin/env python3
"""Builds a hookwire plugin written in Python into a WebAssembly component
of the world ``hookwire:policy/policy@0.1.0``:

    python3 guest-sdk/python/build.py plugin.py -o plugin.wasm [--name N] [--version V]

The plugin is one module defining the hooks it implements (``on_msg``,
``authenticate``, ``on_join``, ``storage_mode``, ``route_push`` or
``on_raw_msg``). It is copied next to a generated app module that exports
``WitWorld`` for it (``hookwire_guest._world``), and componentize-py (the
pinned version, from ``guest-sdk/python/.venv`` if there, else from PATH)
snapshots the lot against ``wit/``. Only the plugin, the SDK and the Python
standard library go in: no site-packages. The result imports
``hookwire:policy/host`` and WASI 0.2 interfaces the server provides.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORLD = "hookwire:policy/policy@0.1.0"
COMPONENTIZE_PY_VERSION = "0.25.1"


def componentize_py() -> list:
    venv = HERE / ".venv" / "bin" / "componentize-py"
    if venv.exists():
        return [str(venv)]
    found = shutil.which("componentize-py")
    if found:
        return [found]
    try:  # installed with `pip install --user` but ~/.local/bin not on PATH
        import componentize_py  # noqa: F401

        return [sys.executable, "-c", "import sys; from componentize_py import script; sys.exit(script())"]
    except ImportError:
        pass
    sys.exit(
        "hookwire-py-build: componentize-py not found; install it with\n"
        f"  python3 -m venv {HERE / '.venv'} && {HERE / '.venv/bin/pip'} install "
        f"componentize-py=={COMPONENTIZE_PY_VERSION}\n(or run plugins/build-guests.sh)"
    )


def main() -> None:
    p = argparse.ArgumentParser(prog="hookwire-py-build", description=__doc__.split("\n\n")[0])
    p.add_argument("plugin", type=Path)
    p.add_argument("-o", "--out", type=Path)
    p.add_argument("--name", help="reported by describe (default: the file name, _ → -)")
    p.add_argument("--version", default="0.1.0", help="reported by describe (default: 0.1.0)")
    p.add_argument("--wit", type=Path, default=HERE.parent.parent / "wit")
    p.add_argument("--keep", action="store_true", help="keep the generated sources")
    a = p.parse_args()

    plugin = a.plugin.resolve()
    if not plugin.is_file():
        sys.exit(f"hookwire-py-build: no such file: {a.plugin}")
    out = (a.out or plugin.with_suffix(".wasm")).resolve()
    name = a.name or plugin.stem.replace("_", "-")

    work = Path(tempfile.mkdtemp(prefix="hookwire-py-"))
    try:
        shutil.copyfile(plugin, work / "hookwire_plugin.py")
        (work / "hookwire_app.py").write_text(
            "import hookwire_plugin\n"
            "from hookwire_guest._world import make_world\n"
            f"WitWorld = make_world(hookwire_plugin, {name!r}, {a.version!r})\n"
        )
        cmd = [
            *componentize_py(),
            "-d", str(a.wit.resolve()),
            "-w", WORLD,
            "componentize", "hookwire_app",
            "-p", str(work),
            "-p", str(HERE),
            "-o", str(out),
        ]
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        started = time.time()
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stdout + r.stderr)
            sys.exit(f"hookwire-py-build: componentize-py failed ({r.returncode})")
        size = out.stat().st_size
        print(
            f"hookwire-py-build: {out} ({name} {a.version}, {size / 1048576:.1f} MiB, "
            f"{time.time() - started:.1f} s)",
            file=sys.stderr,
        )
    finally:
        if a.keep:
            print(f"hookwire-py-build: sources kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
