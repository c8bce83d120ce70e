"""The metadata service (Nova's metadata API, port 8775) and the instance metadata builder.

``content.py`` builds every document a guest can read about itself (``meta_data.json``,
``network_data.json``, ``vendor_data.json``, user data, the EC2 tree) from one instance dict;
the config drive (``drivers/hypervisor/configdrive.py``) and the HTTP service (``app.py``)
both use it, so a guest sees the same data from either source.
"""
