"""What the spawner puts on the queue lives no longer than its seal (security review L4)."""

from __future__ import annotations

from azure.storage.queue import QueueClient
from spawner_support import make_spawner

from acaspawner.contract import QUEUE_TTL_MARGIN, Op


async def test_a_request_expires_from_the_queue_soon_after_its_seal(db, spawner_kwargs, storage_config):
    spawner = make_spawner(db, user_name="ttl", seal_max_age=600, **spawner_kwargs)
    await spawner.send_request(Op.STOP)
    queue = QueueClient.from_connection_string(storage_config.connection_string, storage_config.queue_name)
    with queue:
        (message,) = queue.peek_messages(max_messages=5)
    lived = (message.expires_on - message.inserted_on).total_seconds()
    assert lived == 600 + QUEUE_TTL_MARGIN  # not the queue's default of 7 days, a sealed token and all
