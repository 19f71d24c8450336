"""Builds tcplab's one compiled module, the capture scanner (lab/analysis/tcpscan.pyx: why it is
compiled is said there); everything else is in pyproject.toml."""
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(ext_modules=cythonize([Extension("lab.analysis.tcpscan", ["lab/analysis/tcpscan.pyx"], extra_compile_args=["-O2"])],
                            language_level=3))
