"""Package discovery for pyproject.toml's folder mapping: every package under each mapped folder.

setuptools' own discovery cannot map several top-level folders into one namespace, and an explicit list
drops a new folder silently; this finds every folder with an ``__init__.py`` under each mapped one.
"""

import tomllib
from pathlib import Path

from setuptools import find_packages, setup

PYPROJECT = tomllib.loads(Path(__file__).with_name("pyproject.toml").read_text())
ROOTS = PYPROJECT["tool"]["setuptools"]["package-dir"]
setup(packages=[f"{name}.{sub}" if sub else name for name, folder in ROOTS.items()
                for sub in ["", *find_packages(folder)]])  # fmt: skip
