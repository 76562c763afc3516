"""``poolwarden-panel notify-worker``: deliver notifications from the ``notify`` queue.

An RQ worker with the JSON serializer, the job class that runs only ``panel.notify.deliver``,
and RQ's scheduler, which puts retries back on the queue after their backoff interval. Run one
(or more, on any host that reaches PostgreSQL and Redis) next to the engine.
"""

from __future__ import annotations

import os
import socket

import click

from panel.audit.cli import command_config


@click.command("notify-worker")
@click.option("--burst", is_flag=True, help="Deliver what is queued (and retries now due), then exit.")
@click.option("--name", default=None, help="Worker name in RQ (default: notify.<host>.<pid>).")
def notify_worker_command(burst: bool, name: str | None) -> None:
    """Deliver notifications (webhook, e-mail) queued by the engine, with retries and backoff."""
    import redis
    from rq import Worker
    from rq.serializers import JSONSerializer

    from panel import secretbox
    from panel.notify import jobs

    config = command_config("DATABASE_URL", "REDIS_URL")
    try:
        secretbox.current_keyring()
    except secretbox.SecretboxError as exc:
        raise click.UsageError(f"cannot read channel secrets: {exc}") from None
    jobs.configure(database_url=config["DATABASE_URL"])
    connection = redis.Redis.from_url(config["REDIS_URL"], socket_connect_timeout=5, health_check_interval=30)
    queue = jobs.queue(connection)
    worker = Worker([queue], connection=connection, serializer=JSONSerializer, job_class=jobs.make_job_class(),
                    name=name or f"notify.{socket.gethostname()}.{os.getpid()}")
    click.echo(f"notify worker {worker.name}: delivering from queue '{jobs.QUEUE_NAME}'"
               + (" (burst)" if burst else ""))
    worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
