"""The claims ledger: loading and validating claims files, and each predicate's verdicts on synthetic runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from serveoff.errors import ServeoffError
from serveoff.report.claims import BUILTIN_CLAIMS, STATUSES, Claim, Verdict, evaluate, load_claims
from serveoff.report.runs import Run
from serveoff.report.verdicts import notes

TORCHSERVE = "torchserve 0.12.0"
TFSERVING = "tfserving 2.18.0"
FAKE = "tfserving 0.0.0-serveoff-test-fake"
SOURCES = {
    "torchserve": TORCHSERVE,
    "tfserving": TFSERVING,
    "torch": "in-process torch 2.13.0+cpu",
    "tf": "in-process tf 2.21.0",
}
# A figure next to a unit, as evidence lines print them.
FIGURE = re.compile(r"\d+(\.\d+)?\s*(ms|req/s|inf/s|MiB|%|CPU-s)")


def ci(value: float, spread: float = 0.05) -> dict:
    return {"value": value, "low": value * (1 - spread), "high": value * (1 + spread)}


def point(
    target: str,
    *,
    p50: float = 4000.0,
    p99: float | None = None,
    rps: float = 200.0,
    errors: float = 0.0,
    cpu: float | None = None,
    rss: float | None = None,
    concurrency: int = 1,
    model: str = "digits-mlp",
    phase: str = "sweep",
    source: str | None = None,
    spread: float = 0.05,
) -> dict:
    """A measured point of ``target``; latencies in microseconds, each figure with a ±spread CI."""
    system, protocol = target.split(":")
    p99 = p99 if p99 is not None else p50 * 2
    doc = {
        "model": model,
        "target": target,
        "system": system,
        "protocol": protocol,
        "baseline": protocol == "inprocess",
        "source": source or SOURCES.get(system, f"{system} 1.0"),
        "phase": phase,
        "load": {"loop": "closed", "concurrency": concurrency},
        "label": f"c={concurrency}",
        "offered": float(concurrency),
        "summary": {
            "requests": 1000,
            "throughput_rps": ci(rps, spread),
            "inferences_per_s": ci(rps, spread),
            "error_rate": {"value": errors, "low": errors, "high": errors},
            "latency_us": {"p50": ci(p50, spread), "p99": ci(p99, spread)},
            "cpu_s_per_1000": None if cpu is None else ci(cpu, spread),
        },
    }
    if rss is not None:
        doc["peak_rss_mib"] = rss
    return doc


def make_run(tmp_path: Path, points: list[dict], gpus: list | None = None) -> Run:
    machine = {"cpu_model": "test", "cores_logical": 2, **({"gpus": gpus} if gpus is not None else {})}
    doc = {
        "schema": "serveoff.results/1",
        "run_id": "test-run",
        "status": "complete",
        "manifest": {"machine": machine, "plan": {"targets": sorted({p["target"] for p in points})}},
        "points": points,
    }
    return Run(path=tmp_path, doc=doc)


def claim(predicate: dict, requires: list[str] | None = None) -> Claim:
    source = {"article": "An article", "file": "000.txt"}
    return Claim("test-claim", "a claim", [source], predicate, requires or [])


def check(tmp_path: Path, predicate: dict, points: list[dict], gpus: list | None = None) -> Verdict:
    """The verdict of one claim with ``predicate`` (defaults filled in, as loading does) on ``points``."""
    predicate = {"at": "all", **predicate}
    if "better" in predicate:
        predicate.setdefault("by_at_least", 0.0)
    [verdict] = evaluate([claim(predicate)], make_run(tmp_path, points, gpus))
    assert verdict.status in STATUSES
    return verdict


def both_servers(ts_p50: float, tf_p50: float, **kwargs) -> list[dict]:
    """TorchServe and TF Serving over both protocols at one load."""
    return [
        point(f"{system}:{protocol}", p50=p50, **kwargs)
        for system, p50 in (("torchserve", ts_p50), ("tfserving", tf_p50))
        for protocol in ("rest", "grpc")
    ]


LATENCY = {"better": "tfserving", "than": "torchserve", "metric": "p50"}


# better


def test_better_is_supported_when_every_interval_is_clear(tmp_path: Path) -> None:
    verdict = check(tmp_path, LATENCY, both_servers(4000, 2000) + both_servers(6000, 3000, concurrency=2))
    assert verdict.status == "supported"
    assert "all 4 matched points" in verdict.reason
    assert len(verdict.evidence) == 4
    line = next(e for e in verdict.evidence if e.startswith("digits-mlp c=1 p50: TF Serving REST"))
    assert "TF Serving REST 2.00 ms [1.90, 2.10] vs TorchServe REST 4.00 ms [3.80, 4.20]" in line


def test_titles_and_upkeep_notes_come_from_the_run_not_from_the_code(tmp_path: Path) -> None:
    run = make_run(tmp_path, both_servers(4000, 2000))
    run.doc["manifest"]["systems"] = {
        "torchserve": {"title": "TS as recorded", "status": "archived upstream"},
        "tfserving": {"title": "TFS as recorded", "status": None},
    }
    [verdict] = evaluate([claim({"at": "all", "by_at_least": 0.0, **LATENCY})], run)
    evidence = " ".join(verdict.evidence)
    assert "TFS as recorded REST 2.00 ms [1.90, 2.10] vs TS as recorded REST 4.00 ms" in evidence
    assert "TF Serving" not in verdict.reason + evidence
    assert "archived upstream" in notes(run, 0.01)
    old = make_run(tmp_path, both_servers(4000, 2000))  # schema 1: no systems recorded
    assert old.system_title("tfserving") == "TF Serving" and old.system_title("torch") == "in-process PyTorch"


def test_better_is_refuted_when_the_other_wins(tmp_path: Path) -> None:
    verdict = check(tmp_path, LATENCY, both_servers(2000, 4000))
    assert verdict.status == "refuted"
    assert verdict.reason.startswith("TorchServe had lower p50 latency than TF Serving at 2 of 2")


def test_overlapping_intervals_are_inconclusive(tmp_path: Path) -> None:
    verdict = check(tmp_path, LATENCY, both_servers(4000, 3900))
    assert verdict.status == "inconclusive"
    assert "confidence intervals" in verdict.reason and "overlap" in verdict.reason
    assert all(line.endswith("confidence intervals overlap") for line in verdict.evidence)


def test_a_win_and_a_loss_are_mixed(tmp_path: Path) -> None:
    points = both_servers(4000, 2000) + both_servers(2000, 4000, concurrency=2)
    verdict = check(tmp_path, LATENCY, points)
    assert verdict.status == "inconclusive"
    assert verdict.reason.startswith(
        "mixed: TF Serving better at 2 of 4 matched points, TorchServe better at 2"
    )


def test_by_at_least_needs_the_whole_margin(tmp_path: Path) -> None:
    points = [point("torch:inprocess", rps=100), point("torch:compiled", rps=140)]
    predicate = {"better": "torch:compiled", "than": "torch:inprocess", "metric": "throughput"}
    assert check(tmp_path, {**predicate, "by_at_least": 0.2}, points).status == "supported"
    short = check(tmp_path, {**predicate, "by_at_least": 0.5}, points)
    assert short.status == "inconclusive"
    assert "under 50%" in short.reason


def test_higher_is_better_for_throughput(tmp_path: Path) -> None:
    predicate = {"better": "tfserving", "than": "torchserve", "metric": "throughput"}

    def rest(torchserve_rps: float, tfserving_rps: float) -> list[dict]:
        return [point("torchserve:rest", rps=torchserve_rps), point("tfserving:rest", rps=tfserving_rps)]

    assert check(tmp_path, predicate, rest(300, 100)).status == "refuted"
    verdict = check(tmp_path, predicate, rest(100, 300))
    assert verdict.status == "supported"
    assert "higher throughput" in verdict.reason
    assert (
        "TF Serving REST 300 req/s [285, 315] vs TorchServe REST 100 req/s [95.0, 105]" in verdict.evidence[0]
    )


def test_servers_are_matched_protocol_by_protocol(tmp_path: Path) -> None:
    points = [point("torchserve:rest", p50=9000), point("tfserving:grpc", p50=1000)]
    verdict = check(tmp_path, LATENCY, points)
    assert verdict.status == "not testable"
    assert "never ran at the same model, phase, load and protocol" in verdict.reason


def test_baselines_match_inprocess_to_inprocess(tmp_path: Path) -> None:
    points = [point("torch:inprocess", p50=300), point("tf:inprocess", p50=800)]
    verdict = check(tmp_path, {"better": "tf", "than": "torch", "metric": "p50"}, points)
    assert verdict.status == "refuted"
    assert "in-process PyTorch had lower p50 latency than in-process TensorFlow" in verdict.reason


def test_points_at_another_load_or_model_are_not_compared(tmp_path: Path) -> None:
    points = [
        point("torchserve:rest", p50=9000, concurrency=1),
        point("tfserving:rest", p50=1000, concurrency=2),
    ]
    points.append(point("tfserving:rest", model="resnet50", p50=1000))
    assert check(tmp_path, LATENCY, points).status == "not testable"


def test_not_worse_accepts_a_tie_at_zero(tmp_path: Path) -> None:
    no_more = {"not_worse": "tfserving", "than": "torchserve", "metric": "error_rate"}
    fewer = {"better": "tfserving", "than": "torchserve", "metric": "error_rate"}
    assert check(tmp_path, no_more, both_servers(4000, 4000)).status == "supported"
    assert check(tmp_path, fewer, both_servers(4000, 4000)).status == "inconclusive"  # 0 is not below 0
    worse = both_servers(4000, 4000)
    for p in worse[2:]:
        p["summary"]["error_rate"] = ci(0.1)
    verdict = check(tmp_path, no_more, worse)
    assert verdict.status == "refuted"
    assert "TorchServe had lower error rate than TF Serving" in verdict.reason
    assert "TF Serving REST 10.0% [9.50, 10.5]" in verdict.evidence[0]


# at: heaviest / lightest


def test_heaviest_and_lightest_pick_the_extreme_load_of_each_model(tmp_path: Path) -> None:
    points = both_servers(2000, 4000, concurrency=1) + both_servers(8000, 4000, concurrency=8)
    heaviest = check(tmp_path, {**LATENCY, "at": "heaviest"}, points)
    assert heaviest.status == "supported"
    assert all(line.startswith("digits-mlp c=8") for line in heaviest.evidence)
    assert "heaviest load of each model" in heaviest.reason
    assert check(tmp_path, {**LATENCY, "at": "lightest"}, points).status == "refuted"
    assert check(tmp_path, LATENCY, points).status == "inconclusive"


def test_heaviest_is_per_model(tmp_path: Path) -> None:
    points = both_servers(8000, 4000, concurrency=8) + both_servers(
        8000, 4000, concurrency=2, model="resnet50"
    )
    points += both_servers(2000, 4000, concurrency=1, model="resnet50")
    verdict = check(tmp_path, {**LATENCY, "at": "heaviest"}, points)
    assert verdict.status == "supported"
    assert sorted(line.split(" p50")[0] for line in verdict.evidence) == [
        "digits-mlp c=8",
        "digits-mlp c=8",
        "resnet50 c=2",
        "resnet50 c=2",
    ]


# similar


def test_similar_supported_refuted_and_inconclusive(tmp_path: Path) -> None:
    predicate = {"similar": ["torch", "tf"], "metric": "throughput", "within": 0.2}
    close = [point("torch:inprocess", rps=1000, spread=0.02), point("tf:inprocess", rps=1050, spread=0.02)]
    assert check(tmp_path, predicate, close).status == "supported"
    far = [point("torch:inprocess", rps=2000), point("tf:inprocess", rps=1000)]
    verdict = check(tmp_path, predicate, far)
    assert verdict.status == "refuted"
    assert "differed by more than 20% in throughput" in verdict.reason
    wide = [point("torch:inprocess", rps=1150, spread=0.2), point("tf:inprocess", rps=1000, spread=0.2)]
    verdict = check(tmp_path, predicate, wide)
    assert verdict.status == "inconclusive"
    assert "too wide" in verdict.reason


def test_similar_memory_uses_the_value_without_a_ci(tmp_path: Path) -> None:
    predicate = {"similar": ["torchserve", "tfserving"], "metric": "peak_rss_mib", "within": 0.25}
    near = [point("torchserve:rest", rss=500.0), point("tfserving:rest", rss=560.0)]
    verdict = check(tmp_path, predicate, near)
    assert verdict.status == "supported"
    assert "TorchServe REST 500 MiB vs TF Serving REST 560 MiB" in verdict.evidence[0]
    far = [point("torchserve:rest", rss=500.0), point("tfserving:rest", rss=700.0)]
    assert check(tmp_path, predicate, far).status == "refuted"


def test_a_missing_metric_is_not_testable(tmp_path: Path) -> None:
    predicate = {"similar": ["torchserve", "tfserving"], "metric": "cpu_s_per_1000", "within": 0.25}
    verdict = check(tmp_path, predicate, both_servers(4000, 4000))  # cpu_s_per_1000 is null
    assert verdict.status == "not testable"
    assert "CPU time per 1000 inferences was not measured" in verdict.reason
    points = both_servers(4000, 4000, cpu=8.0)
    assert check(tmp_path, predicate, points).status == "supported"


def test_a_figure_that_is_not_a_number_settles_nothing(tmp_path: Path) -> None:
    points = both_servers(4000, 2000)
    for each in points:
        each["summary"]["latency_us"]["p50"] = {"value": float("nan"), "low": 1.0, "high": float("nan")}
    verdict = check(tmp_path, LATENCY, points)
    assert verdict.status == "not testable"
    assert "p50 latency was not measured" in verdict.reason
    assert not re.search(r"\bnan\b", " ".join([verdict.reason, *verdict.evidence]), re.I)


# not testable


def test_a_target_without_results_is_not_testable(tmp_path: Path) -> None:
    predicate = {"better": "torch:compiled", "than": "torch:inprocess", "metric": "throughput"}
    verdict = check(tmp_path, predicate, [point("torch:inprocess")])
    assert verdict.status == "not testable"
    assert verdict.reason == "not testable on this run: no results for in-process PyTorch torch.compile"


def test_a_test_double_never_settles_a_claim(tmp_path: Path) -> None:
    points = both_servers(4000, 1000)
    for p in points[2:]:
        p["source"] = FAKE
    verdict = check(tmp_path, LATENCY, points)
    assert verdict.status == "not testable"
    assert verdict.reason == (
        "not testable on this run: no TF Serving results (the tfserving figures came from a test double)"
    )
    assert not any(FIGURE.search(line) for line in verdict.evidence)


def test_a_gpu_claim_needs_a_gpu(tmp_path: Path) -> None:
    points = both_servers(4000, 2000)
    [cpu] = evaluate(
        [claim({**LATENCY, "at": "all", "by_at_least": 0.0}, ["gpu"])], make_run(tmp_path, points)
    )
    assert cpu.status == "not testable"
    assert cpu.reason == "not testable on this run: needs a GPU; this run was on CPU only"
    run = make_run(tmp_path, points, gpus=[{"name": "A100"}])
    [gpu] = evaluate([claim({**LATENCY, "at": "all", "by_at_least": 0.0}, ["gpu"])], run)
    assert gpu.status == "supported"


# all_of


def test_all_of(tmp_path: Path) -> None:
    lower_p99 = {
        "better": "tfserving",
        "than": "torchserve",
        "metric": "p99",
        "at": "heaviest",
        "by_at_least": 0,
    }
    no_more_errors = {
        "not_worse": "tfserving",
        "than": "torchserve",
        "metric": "error_rate",
        "at": "heaviest",
    }
    mature = {"all_of": [lower_p99, no_more_errors]}
    assert check(tmp_path, mature, both_servers(4000, 2000)).status == "supported"
    assert check(tmp_path, mature, both_servers(2000, 4000)).status == "refuted"
    overlap = check(tmp_path, mature, both_servers(4000, 3900))
    assert overlap.status == "inconclusive"
    assert overlap.reason.startswith("not every part is settled")
    with_gap = {"all_of": [lower_p99, {**no_more_errors, "not_worse": "torch:compiled"}]}
    gap = check(tmp_path, with_gap, both_servers(4000, 2000))
    assert gap.status == "not testable"
    assert gap.reason == "not testable on this run: no results for in-process PyTorch torch.compile"
    assert check(tmp_path, with_gap, both_servers(2000, 4000)).status == "refuted"  # a refuted part wins


# the built-in ledger


def test_every_builtin_claim_loads_and_evaluates(tmp_path: Path) -> None:
    claims = load_claims()
    ids = [c.id for c in claims]
    assert len(ids) == len(set(ids)) >= 10
    assert all(
        c.sources and all(s["article"] and s["file"].endswith(".txt") for s in c.sources) for c in claims
    )
    predicates = [c.predicate for c in claims]
    assert {
        "better": "tfserving",
        "than": "torchserve",
        "metric": "p50",
        "at": "all",
        "by_at_least": 0.0,
    } in predicates
    assert any(c.requires == ["gpu"] for c in claims)
    points = both_servers(4000, 2000, rss=500.0, cpu=8.0)
    points += [point("torch:inprocess", p50=300), point("tf:inprocess", p50=310)]
    verdicts = evaluate(claims, make_run(tmp_path, points))
    by_id = {v.claim.id: v for v in verdicts}
    assert by_id["tfserving-lower-latency"].status == "supported"
    assert by_id["tfserving-more-mature-under-load"].status == "supported"
    assert by_id["torch-compile-speedup"].status == "not testable"
    assert by_id["torch-compile-gpu-utilisation"].reason.endswith("this run was on CPU only")
    assert all(v.reason and "\n" not in v.reason for v in verdicts)


def test_builtin_quotes_are_short_and_verbatim() -> None:
    quoted = [(c.id, s) for c in load_claims() for s in c.sources if "quote" in s]
    assert quoted and all(len(s["quote"].split()) <= 12 for _, s in quoted)
    seeds = Path("/work/shared/seeds")  # the articles, where serveoff is developed
    if not seeds.is_dir():
        pytest.skip("the seed articles are not on this machine")
    for claim_id, source in quoted:
        text = " ".join((seeds / source["file"]).read_text().split())
        assert " ".join(source["quote"].split()) in text, (claim_id, source["quote"])


def test_no_line_of_a_test_double_run_calls_its_figures_tf_serving(tmp_path: Path) -> None:
    points = both_servers(4000, 2000, rss=500.0, cpu=8.0)
    points += [point("torch:inprocess", p50=300), point("tf:inprocess", p50=310)]
    for p in points:
        if p["system"] == "tfserving":
            p["source"] = FAKE
    verdicts = evaluate(load_claims(), make_run(tmp_path, points))
    lines = [line for v in verdicts for line in [v.reason, *v.evidence]]
    assert not [line for line in lines if "TF Serving" in line and FIGURE.search(line)]
    tf_serving = [v for v in verdicts if "tfserving" in str(v.claim.predicate)]
    assert tf_serving and all(v.status == "not testable" for v in tf_serving)
    assert any(FIGURE.search(line) for line in lines)  # the baselines' figures are still reported


# user files and malformed files


def write_claims(tmp_path: Path, claims: list[dict] | str, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(
        claims if isinstance(claims, str) else yaml.safe_dump({"claims": claims}, sort_keys=False)
    )
    return path


def user_claim(**changes) -> dict:
    entry = {
        "id": "grpc-faster",
        "claim": "gRPC answers faster than REST on TorchServe",
        "sources": [{"article": "My notes", "file": "notes.md", "quote": "gRPC is faster"}],
        "predicate": {"better": "torchserve:grpc", "than": "torchserve:rest", "metric": "p50"},
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def test_a_user_file_adds_claims(tmp_path: Path) -> None:
    builtin = load_claims()
    claims = load_claims([write_claims(tmp_path, [user_claim()])])
    assert len(claims) == len(builtin) + 1
    mine = claims[-1]
    assert mine.id == "grpc-faster"
    assert mine.predicate == {
        "better": "torchserve:grpc",
        "than": "torchserve:rest",
        "metric": "p50",
        "at": "all",
        "by_at_least": 0.0,
    }
    points = [point("torchserve:grpc", p50=2000), point("torchserve:rest", p50=3000)]
    assert evaluate([mine], make_run(tmp_path, points))[0].status == "supported"


def malformed(tmp_path: Path, content: list[dict] | str, *expected: str) -> str:
    path = write_claims(tmp_path, content)
    with pytest.raises(ServeoffError) as caught:
        load_claims([path])
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    for text in expected:
        assert text in message
    return message


def test_bad_yaml_is_one_line(tmp_path: Path) -> None:
    malformed(
        tmp_path, "claims:\n  - id: x\n    claim: [unclosed\n", "not valid YAML at line", "fix the YAML"
    )


def test_a_file_without_a_claims_list(tmp_path: Path) -> None:
    malformed(tmp_path, "- id: x\n", "`claims:`")


def test_unknown_metric(tmp_path: Path) -> None:
    predicate = {"better": "tfserving", "than": "torchserve", "metric": "p42"}
    malformed(
        tmp_path, [user_claim(predicate=predicate)], "claim 'grpc-faster'", "unknown metric 'p42'", "p50"
    )


def test_unknown_predicate_key(tmp_path: Path) -> None:
    predicate = {"better": "tfserving", "than": "torchserve", "metric": "p50", "margin": 0.1}
    malformed(
        tmp_path, [user_claim(predicate=predicate)], "'grpc-faster'", "unknown key 'margin'", "by_at_least"
    )
    typo = {"bettr": "tfserving", "than": "torchserve", "metric": "p50"}
    malformed(tmp_path, [user_claim(predicate=typo)], "unknown predicate key 'bettr'")


def test_unknown_system_and_bad_numbers(tmp_path: Path) -> None:
    predicate = {"better": "tfservng", "than": "torchserve", "metric": "p50"}
    malformed(tmp_path, [user_claim(predicate=predicate)], "unknown system or target 'tfservng'")
    similar = {"similar": ["torch", "tf"], "metric": "throughput", "within": -1}
    malformed(tmp_path, [user_claim(predicate=similar)], "`within:` must be a fraction > 0")
    nested = {"all_of": [{"better": "torch", "than": "tf", "metric": "p50", "at": "busiest"}]}
    malformed(tmp_path, [user_claim(predicate=nested)], "`at:` is 'busiest'")


def test_duplicate_ids(tmp_path: Path) -> None:
    malformed(tmp_path, [user_claim(), user_claim()], "'grpc-faster'", "already used earlier in this file")
    taken = load_claims()[0].id
    malformed(tmp_path, [user_claim(id=taken)], f"'{taken}'", f"already used in {BUILTIN_CLAIMS}")


def test_missing_fields(tmp_path: Path) -> None:
    malformed(tmp_path, [user_claim(sources=None)], "claim 'grpc-faster'", "has no `sources:`")
    malformed(tmp_path, [user_claim(id=None)], "claim #1", "needs an `id:`")
    malformed(tmp_path, [user_claim(id=1)], "claim #1", "quote ids that look like numbers")
    no_file = [{"article": "My notes"}]
    malformed(tmp_path, [user_claim(sources=no_file)], "a source has no `file:`")
    malformed(tmp_path, [user_claim(requires=["tpu"])], "unknown capability 'tpu'")


def test_a_long_quote_is_refused(tmp_path: Path) -> None:
    long = [{"article": "A", "file": "a.txt", "quote": " ".join(["word"] * 13)}]
    malformed(tmp_path, [user_claim(sources=long)], "a quote has 13 words")


def test_a_missing_user_file(tmp_path: Path) -> None:
    with pytest.raises(ServeoffError, match="no such claims file"):
        load_claims([tmp_path / "absent.yaml"])
