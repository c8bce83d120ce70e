"""Block-storage drivers: where a volume's data lives (``base.py`` is the contract)."""
