"""One line for a YAML syntax error in a user's file (claims or gate rules)."""

from __future__ import annotations

import yaml


def yaml_problem(err: yaml.YAMLError) -> str:
    """``not valid YAML at line L, column C: <problem>``."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None) or str(err)
    return f"not valid YAML{where}: {' '.join(problem.split())}"
