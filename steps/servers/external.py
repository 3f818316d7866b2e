"""Someone else's PostgreSQL (DB_SERVER=external): nothing to start or stop."""

from __future__ import annotations

from steps.commands import say
from steps.servers import Provider


class ExternalProvider(Provider):
    """Someone else's server at POSTGRES_HOSTNAME:POSTGRES_PORT: nothing to start or stop."""

    label = "external"
    ours = False

    @property
    def host(self) -> str:
        return self.env["POSTGRES_HOSTNAME"]

    def running(self) -> int | None:
        return int(self.env["POSTGRES_PORT"])

    def stop(self) -> bool:
        say("DB_SERVER=external: that server is not ours to stop")
        return False

    def where(self) -> str:
        return "run by someone else"
