"""Schemathesis hooks of the contract stage (contract/schemathesis.toml loads this module)."""

import schemathesis

# POST /api/v2/gdpr/index/subjects takes NDJSON, declared as a string: send it as text.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
