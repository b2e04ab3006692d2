"""Scraping servers' Prometheus metrics: names as the server exposes them, and a failed scrape recorded.

The metrics servers here are small HTTP servers on 127.0.0.1 that answer fixed texts: TF Serving's own
format (a counter without ``_total``, as upstream's prometheus_exporter writes it) and text that is not
metrics; `serveoff bench` meets the latter in place of the TF Serving test fake's own metrics.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving import fleet
from serveoff.serving.metrics import parse, scrape
from serveoff.serving.process import free_port_base
from serveoff.serving.resources import server_config
from serveoff.serving.tfserving.server import TFServing
from tests.commands import QUICK, serveoff

TF_SERVING_TEXT = """# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{model_name="digits-mlp",status="OK"} 7
:tensorflow:serving:request_count{model_name="digits-mlp",status="INVALID_ARGUMENT"} 2
# TYPE :tensorflow:core:graph_runs counter
:tensorflow:core:graph_runs 9
"""
TORCHSERVE_TEXT = """# HELP ts_inference_requests_total Total number of inference requests.
# TYPE ts_inference_requests_total counter
ts_inference_requests_total{model_name="digits-mlp",model_version="default",hostname="h"} 5.0
# HELP ts_queue_latency_microseconds Cumulative queue duration in microseconds
# TYPE ts_queue_latency_microseconds gauge
ts_queue_latency_microseconds{model_name="digits-mlp"} 1.5
"""
GARBAGE = "<html><body>502 Bad Gateway { oops</body></html>\n"


@pytest.fixture(scope="module")
def metrics_server() -> Iterator[dict[str, str]]:
    """URL -> text: an HTTP server on 127.0.0.1 answering each path with its text."""
    texts = {"/tf": TF_SERVING_TEXT, "/garbage": GARBAGE}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = texts[self.path].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield {path.strip("/"): base + path for path in texts}
    finally:
        server.shutdown()
        server.server_close()


def test_a_counter_without_total_keeps_its_name_and_value() -> None:
    values = parse(TF_SERVING_TEXT)
    assert values == {
        ':tensorflow:serving:request_count{model_name="digits-mlp",status="OK"}': 7.0,
        ':tensorflow:serving:request_count{model_name="digits-mlp",status="INVALID_ARGUMENT"}': 2.0,
        ":tensorflow:core:graph_runs": 9.0,
    }


def test_a_counter_with_total_and_a_gauge_keep_theirs() -> None:
    assert parse(TORCHSERVE_TEXT) == {
        'ts_inference_requests_total{hostname="h",model_name="digits-mlp",model_version="default"}': 5.0,
        'ts_queue_latency_microseconds{model_name="digits-mlp"}': 1.5,
    }


def test_text_that_is_not_metrics_is_a_clear_error(metrics_server) -> None:
    with pytest.raises(ServeoffError, match="not Prometheus text"):
        parse(GARBAGE)
    with pytest.raises(ServeoffError, match=f"cannot parse the metrics of {metrics_server['garbage']}: "):
        scrape(metrics_server["garbage"])
    assert scrape(metrics_server["tf"]) == parse(TF_SERVING_TEXT)  # over HTTP too


@pytest.fixture(scope="module")
def garbled_state(built, env, metrics_server, tmp_path_factory) -> Iterator[Path]:
    """The TF Serving fake serving digits-mlp, recorded with the garbage server as its metrics endpoint."""
    digits = ArtifactLayout(built["digits-mlp"].root, "digits-mlp")
    workdir = tmp_path_factory.mktemp("garbled")
    state = workdir / "servers.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", env["PATH"])
        fleet.start_servers(["tfserving"], [digits], server_config("matched"), workdir / "work", state,
                            {"tfserving": free_port_base(TFServing.port_count)})  # fmt: skip
    try:
        data = json.loads(state.read_text())
        for record in data["servers"]:
            record["endpoints"]["metrics"] = metrics_server["garbage"]
        garbled = workdir / "garbled.json"
        garbled.write_text(json.dumps(data))
        yield garbled
    finally:
        fleet.stop_servers(state)


def test_a_failed_scrape_is_recorded_in_the_point_not_fatal(garbled_state, metrics_server, tmp_path, env):
    args = ["bench", "--state", str(garbled_state), "--out", str(tmp_path), "--run-id", "garbled"]
    done = serveoff([*args, "--target", "tfserving:rest", "--concurrency", "1", *QUICK], env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "garbled" / "results.json").read_text())
    (point,) = results["points"]
    assert results["status"] == "complete" and point["summary"]["requests"] > 0
    error = point["server_metrics"]["error"]
    assert error.startswith(f"cannot parse the metrics of {metrics_server['garbage']}: not Prometheus text")
