"""kombu's Redis transport, with the one guard a broker restart needs.

When Redis goes away while a worker holds unacknowledged messages, Celery collects the broken
connection and then closes it. The collect detaches the transport from its connection; the close
then asks the channel to put the unacknowledged messages back, which needs a connection pool, and
kombu (5.4 to 5.7) builds it from the detached ``connection.client``: ``AttributeError: 'NoneType'
object has no attribute 'hostname'``. That is not a connection error, so Celery calls it
unrecoverable and the worker exits with status 0, consuming nothing more.

Here the channel raises Redis's own ConnectionError instead, which kombu's close ignores as it
should: the worker reconnects, and the messages stay in Redis's unacked set, from where the
visibility timeout (or, without persistence, Octoprov's periodic job) brings them back.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

TRANSPORT = f"{__name__}:Transport"
"""What Celery's ``broker_transport`` names for a ``redis://`` or ``rediss://`` broker."""


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        """The pool's settings; a connection error once the transport is detached from its connection."""
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection is closed; the worker reconnects")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel
