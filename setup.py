# setuptools reads everything from pyproject.toml; this file only hooks cffi's
# build of harness/_mem, which pyproject.toml cannot express yet.
from setuptools import setup

setup(cffi_modules=["harness/_mem_build.py:ffibuilder"])
