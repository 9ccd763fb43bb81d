"""The compiled part of qfleet: the OTLP span decoder's fast path (everything else is in pyproject.toml).

``optional=True``: on a machine without a C compiler the install still succeeds, and the receiver converts
every request with the pure-Python path (same rows, slower); ``qfleet collector serve`` logs which path it runs.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(ext_modules=cythonize(
    [Extension("qfleet.collector._span_wire", ["collector/_span_wire.pyx"], optional=True)],
    compiler_directives={"language_level": "3"},
))
