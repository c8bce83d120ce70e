"""Fault injection: make chosen operations of a running cloud fail or slow down on purpose.

Off by default. Rules live in ``DATA/faults.json`` (``rules.FaultTable``), shared by every
process of the cloud (the main one and the extra identity workers); they are added through
the admin-only ``/_onestack/faults`` API on the identity port (``api``) or ``onestack fault``,
shown by ``onestack status`` and cleared by ``onestack reset``. Four kinds:

- ``http``: a request whose service, method and path match gets the configured status in
  the service's own fault body, after an optional delay (a delay alone slows it down);
- ``build``: a server build on a matching compute host ends in ERROR;
- ``host_down``: a matching compute host stops heartbeating and consuming its messages
  (its service reads "down" at once, builds and actions sent to it are lost);
- ``bus``: a matching RPC message (topic, method) is dropped (a call fails as timed out).

Each rule has a ``rate`` (the probability that a match fires) and an optional ``count``
(how many times it fires before it removes itself).
"""
