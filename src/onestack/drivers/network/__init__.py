"""Network data-plane drivers: ``base`` is the contract, ``noop`` its fake twin."""
