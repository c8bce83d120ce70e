"""The block-storage service (Cinder v3 API)."""
