"""A local HTTP server that behaves like Bling API v3 for everything the pipeline uses.

- `dataset`: deterministic Bling-shaped data (NF-e, contacts, products, payment forms) and its ground truth.
- `server`: `SandboxServer`, the HTTP server (OAuth2, bearer checks, rate limits, endpoints, admin, faults).
- `python -m local.sandbox --help`: the same server from the command line.
"""
