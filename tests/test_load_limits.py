"""Every numeric option of `serveoff bench` and `run` is bounded and finite, checked before anything starts.

The commands run in this process through ``tests.cli_runner`` (fast): gevent's monkey-patching, which
`bench` and `run` do first, is replaced by a no-op here so that it does not patch pytest's own process; no
case gets as far as the load generator, which the message of the valid control case shows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from gevent import monkey

from serveoff.errors import ServeoffError
from serveoff.loadtest.plan import LIMITS, WindowPolicy, check, load_points
from serveoff.loadtest.results import ResultsFile
from serveoff.serving.resources import parse_cpus, server_config
from tests.cli_runner import run_cli

BAD_VALUES = [
    (["--concurrency", "100000000"], "--concurrency 100000000 is too high: at most 10,000 users per point"),
    (["--concurrency", ""], "--concurrency '' is empty"),
    (["--concurrency", "1,,2"], "--concurrency '1,,2' has an empty entry"),
    (["--concurrency", "4,20000"], "--concurrency 20000 is too high"),
    (["--load", "open", "--rate", "nan"], "--rate nan is not a finite number"),
    (["--load", "open", "--rate", "inf"], "--rate inf is not a finite number"),
    (["--load", "open", "--rate", "50,1e9"], "--rate 1e+09 is too high: at most 100,000 requests/s"),
    (["--load", "open", "--rate", "0.001"], "--rate 0.001 is too low"),
    (["--rate", "nan"], "--rate nan is not a finite number"),  # checked even where the load ignores it
    (["--window", "nan"], "--window nan is not a finite number"),
    (["--window", "inf"], "--window inf is not a finite number"),
    (["--window", "0"], "--window 0 is too low"),
    (["--window", "1e6"], "--window 1e+06 is too high: at most 3,600 s"),
    (["--timeout", "nan"], "--timeout nan is not a finite number"),
    (["--timeout", "-inf"], "--timeout -inf is not a finite number"),
    (["--timeout", "0"], "--timeout 0 is too low; give a value more than 0 and at most 600 s"),
    (["--timeout", "601"], "--timeout 601 is too high: at most 600 s"),
    (["--warmup", "-1"], "--warmup -1 is too low"),
    (["--warmup", "nan"], "--warmup nan is not a finite number"),
    (["--tolerance", "nan"], "--tolerance nan is not a finite number"),
    (["--tolerance", "1"], "--tolerance 1 is too high"),
    (["--p99-bound-ms", "nan"], "--p99-bound-ms nan is not a finite number"),
    (["--load", "search", "--p99-bound-ms", "0"], "--p99-bound-ms 0 is too low"),
    (["--load", "search", "--start-rate", "inf"], "--start-rate inf is not a finite number"),
    (["--load", "search", "--max-probes", "1000"], "--max-probes 1000 is too high: at most 100"),
    (["--min-windows", "0"], "--min-windows 0 is too low"),
    (["--max-windows", "100000"], "--max-windows 100000 is too high: at most 100"),
    (["--min-windows", "5", "--max-windows", "2"], "--min-windows (5) <= --max-windows (2)"),
    (["--batch-size", "0"], "--batch-size 0 is too low"),
    (["--batch-size", "100000"], "--batch-size 100000 is too high: at most 1,024"),
    (["--workers", "-1"], "--workers -1 is too low"),
    (["--workers", "1000"], "--workers 1000 is too high: at most 64"),
    (["--seed", "-1"], "--seed -1 is too low"),
    (["--ui-port", "70000"], "--ui-port 70000 is too high: at most 65,535"),
]


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """``serveoff ARGS`` in this process, without gevent's monkey-patching; (exit code, stderr lines)."""
    monkeypatch.setattr(monkey, "patch_all", lambda *args, **kwargs: None)
    monkeypatch.setenv("LOCUST_SKIP_MONKEY_PATCH", "1")  # were locust imported, it must not patch pytest
    monkeypatch.chdir(tmp_path)

    def run(args: list[str]) -> tuple[int, list[str]]:
        done = run_cli([*args, "--out", str(tmp_path / "results")], capsys, monkeypatch)
        return done.code, [line for line in done.stderr.splitlines() if not line.startswith("serveoff: the ")]

    return run


@pytest.mark.parametrize(("args", "message"), BAD_VALUES)
def test_every_bad_number_is_one_clear_line_before_anything_starts(cli, tmp_path, args, message) -> None:
    code, lines = cli(["bench", "--state", str(tmp_path / "none.json"), *args])
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("serveoff: error: ") and message in lines[0], lines
    assert not (tmp_path / "results").exists()  # no run was begun


def test_the_valid_control_case_gets_past_the_checks(cli, tmp_path) -> None:
    """The same command with good values reaches the next step: looking for running servers."""
    code, lines = cli(["bench", "--state", str(tmp_path / "none.json"), "--concurrency", "1,10000"])
    assert code == 2 and "no server recorded in" in lines[-1], lines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cpus", "1-0"], "CPU list '1-0' has a range that runs backwards (1-0); write it low-high"),
        (["--cpus", "0-99999999999"], "names CPUs this machine lacks"),
        (["--cpus", ""], "CPU list '' is malformed"),  # not silently "all CPUs"
        (["--instances", "100000"], "--instances 100000 is too high: at most 256"),
        (["--max-batch-size", "1000000"], "--max-batch-size 1000000 is too high: at most 1,024"),
        (["--batch-timeout-ms", "1000000000"], "--batch-timeout-ms 1000000000 is too high: at most 60,000"),
        (["--rate", "nan"], "--rate nan is not a finite number"),
        (["--concurrency", "100000000"], "--concurrency 100000000 is too high"),
    ],
)
def test_run_checks_its_values_before_it_builds_or_starts_a_server(cli, tmp_path, args, message) -> None:
    code, lines = cli(["run", "--server", "torchserve", "--artifacts", str(tmp_path / "artifacts"), *args])
    assert code == 2 and len(lines) == 1, lines
    assert message in lines[0], lines
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("flag", sorted(LIMITS))
def test_each_limit_refuses_nan_infinity_and_its_neighbours(flag: str) -> None:
    bound = LIMITS[flag]
    for value in (math.nan, math.inf, -math.inf, bound.high * 2 + 1, bound.low - 1):
        with pytest.raises(ServeoffError, match=rf"^{flag} "):
            check(flag, value)
    check(flag, bound.high)
    if not bound.above:
        check(flag, bound.low)
    else:
        with pytest.raises(ServeoffError, match="too low"):
            check(flag, bound.low)


def test_a_policy_made_in_code_is_checked_like_the_command_line() -> None:
    with pytest.raises(ServeoffError, match="--window nan is not a finite number"):
        WindowPolicy(window_s=math.nan).validate()
    with pytest.raises(ServeoffError, match="--rate inf"):
        load_points("open", None, "inf", "poisson")
    assert [p.rate for p in load_points("open", None, "0.5, 100000", "constant")] == [0.5, 100000.0]


def test_cpu_lists_name_the_real_problem() -> None:
    with pytest.raises(ServeoffError, match=r"runs backwards \(3-1\); write it low-high, like 1-3"):
        parse_cpus("0,3-1", (0, 1, 2, 3))
    with pytest.raises(ServeoffError, match=r"lacks \(2-99999999999\); it has 0,1$"):
        parse_cpus("0-99999999999", (0, 1))  # described, never enumerated
    with pytest.raises(ServeoffError, match=r"lacks \(5\)"):
        parse_cpus("0,5", (0, 1))
    assert parse_cpus("1, 0-1", (0, 1)) == (0, 1)
    with pytest.raises(ServeoffError, match="--threads 5000 is too high"):
        server_config("matched", threads=5000, available=(0,))


def test_results_never_hold_a_non_json_number(tmp_path: Path) -> None:
    results = ResultsFile(tmp_path, "run", {"plan": {"rate": math.inf}})
    results.add_search({"model": "m", "max_rate": math.nan, "probes": [{"p99_us": -math.inf, "rate": 2.5}]})
    text = (tmp_path / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in results.json"))
    assert doc["manifest"]["plan"]["rate"] is None
    assert doc["searches"][0] == {"model": "m", "max_rate": None, "probes": [{"p99_us": None, "rate": 2.5}]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--atol", "nan"], "--atol must be a finite number above 0 and below 1, got nan"),
        (["--atol", "inf"], "--atol must be a finite number above 0 and below 1, got inf"),
        (["--atol", "0"], "--atol must be a finite number above 0"),
        (["--seed", "-1"], "--seed must be from 0 to 4294967295, got -1"),
    ],
)
def test_build_checks_its_values_before_it_builds(cli, tmp_path, args, message) -> None:
    code, lines = cli(["build", "--model", "digits-mlp", "--out", str(tmp_path / "artifacts"), *args])
    assert code == 2 and len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "artifacts").exists()
