"""Store layer: table etl_message_failures, the count of failed deliveries of a message where Pub/Sub does not say
which attempt a delivery is (Google's emulator; shared.record_failures.last_attempt)."""
from __future__ import annotations

from shared.db import SchemaDb


def count_failure(database: SchemaDb, topic: str, message_id: str) -> int:
    """Add one failed delivery of the message and return how many it has had (the first call returns 1)."""
    with database.transaction() as cur:
        cur.execute("""INSERT INTO etl_message_failures (topic, message_id, falhas) VALUES (%s, %s, 1)
                       ON CONFLICT (topic, message_id) DO UPDATE
                       SET falhas = etl_message_failures.falhas + 1, atualizado_em = now()
                       RETURNING falhas""", (topic, message_id))
        return int(cur.fetchone()[0])
