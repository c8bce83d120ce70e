"""The console proxy (Nova's ``nova-novncproxy``): remote consoles of guests over WebSocket.

``tokens``: console authorisation tokens (created by the compute API, checked by the proxy);
``proxy``: the ASGI app that checks Origin and token and relays bytes to the guest's VNC
server; ``static``: the noVNC pages it serves; ``setup``: wiring for ``onestack up``.
"""
