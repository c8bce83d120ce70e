"""Host agents: the compute agent (``compute.py``) and the pool that runs them (``pool.py``)."""
