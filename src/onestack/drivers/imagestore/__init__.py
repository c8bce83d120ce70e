"""Image data stores: ``base.ImageStore`` is the contract, ``file.FileStore`` keeps files."""
