"""How a worker's interpreter starts: without `site` (python -I -S), then only what it needs.

    python -I -S boot.py MODULE ARGS      (ARGS: JSON, from `arguments`)

`site` would run every `.pth` file of the environment at start, and a development install's
import hook imports pathlib, urllib, ipaddress and more to find this package: megabytes of heap
that every program process, forked from the worker's zygote, maps and tears down again. Here
the package is found from where the server found it, `sys.prefix` is the server's (a virtual
environment's is set by `site`), the environment's site directories are searched as `site` adds
them (with the directories their `.pth` files name, but no `.pth` line is run: an `import` line
is an import hook, for the server's process, not for programs; a package installed through one
is not importable by programs), and the builtins `site` adds that programs use (`exit`, `quit`,
`help`, ...) are added. Then MODULE's `main()` runs. This file is run by path: it imports
nothing of acecoder first.
"""

from __future__ import annotations

import json
import os
import sys


def arguments() -> str:
    """What the server passes: where each of acecoder's packages is, its site directories and
    its prefixes."""
    import site

    import acecoder
    import acecoder.executor

    packages = [(m.__name__, m.__file__) for m in (acecoder, acecoder.executor)]
    return json.dumps({"packages": packages, "site": site.getsitepackages(),
                       "prefix": sys.prefix, "exec_prefix": sys.exec_prefix})


def _site_dirs(dirs: list[str]) -> list[str]:
    """The site directories, then the directories their `.pth` files name (in `site`'s
    order), skipping `import` lines."""
    out = []
    for d in dirs:
        if not os.path.isdir(d) or d in out:
            continue
        out.append(d)
        for name in sorted(n for n in os.listdir(d) if n.endswith(".pth")):
            try:
                with open(os.path.join(d, name), encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except (OSError, UnicodeDecodeError):
                continue
            for line in lines:
                line = line.strip()
                if not line or line.startswith(("#", "import ", "import\t")):
                    continue
                path = os.path.abspath(os.path.join(d, line))
                if os.path.isdir(path) and path not in out:
                    out.append(path)
    return out


def _register(name: str, init: str) -> None:
    from importlib._bootstrap import module_from_spec
    from importlib._bootstrap_external import spec_from_file_location

    spec = spec_from_file_location(name, init,
                                   submodule_search_locations=[os.path.dirname(init)])
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def main() -> None:
    module, given = sys.argv[1], json.loads(sys.argv[2])
    import site  # with -S, importing it runs nothing: only the builtins below are taken

    site.setquit()
    site.setcopyright()
    site.sethelper()
    # A virtual environment's prefix is set by `site` (not by the interpreter's start): the
    # server's, where the installation's own files are (the precompiled headers, see pch.py).
    sys.prefix, sys.exec_prefix = given["prefix"], given["exec_prefix"]
    sys.path.extend(_site_dirs(given["site"]))
    for name, init in given["packages"]:
        _register(name, init)
    del sys.argv[1:]
    __import__(module)
    sys.modules[module].main()


if __name__ == "__main__":
    main()
