"""Extension modules only; metadata lives in pyproject.toml.

Environment knobs:
    MILLPOND_NO_EXTENSIONS=1  build nothing: the pure-Python core (_core_py) is used
    MILLPOND_DEBUG=1          -O0 -g, bounds checks on, line tracing for coverage
    MILLPOND_ANNOTATE=1       write Cython's HTML annotation next to the .pyx
"""

import os

from setuptools import Extension, setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def extensions():
    if _flag("MILLPOND_NO_EXTENSIONS"):
        return []
    from Cython.Build import cythonize

    debug = _flag("MILLPOND_DEBUG")
    compile_args = ["-O0", "-g"] if debug else ["-O2"]
    compile_args += ["-std=c99", "-Wall", "-Wno-unused-function"]
    directives = {"boundscheck": debug, "wraparound": debug, "linetrace": debug}
    ext = Extension(
        "millpond._core_c",
        ["src/millpond/_core_c.pyx"],
        include_dirs=["csrc"],
        extra_compile_args=compile_args,
        define_macros=[("CYTHON_TRACE_NOGIL", "1")] if debug else [],
    )
    return cythonize(
        [ext],
        compiler_directives=directives,
        annotate=_flag("MILLPOND_ANNOTATE"),
        include_path=["src"],
    )


setup(ext_modules=extensions())
