"""The locustfile serveoff's locust ``--worker`` processes load: its users and message handlers."""

from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from serveoff.loadtest.users import GrpcTarget, HttpTarget, InProcessTarget, install

__all__ = ["GrpcTarget", "HttpTarget", "InProcessTarget"]


@events.init.add_listener
def _install(environment: Environment, **_: object) -> None:
    if isinstance(environment.runner, WorkerRunner):
        install(environment)
