"""Code shared by every function of the Bling → PostgreSQL pipeline.

One module per job: configuration (`config`), structured logging (`log`), the error taxonomy (`errors`),
message schemas (`messages`), Pub/Sub topology (`topology`), the Pub/Sub publisher (`pubsub`), the Firestore
client (`firestore_client`), database access (`db`, `migrate`), the Bling client, token store and rate budget
(`bling`), and the handler wrapper that turns exceptions into ack/nack decisions (`handler`).
"""
