"""The web dashboard (docs/dashboard.md): pages over the public APIs, served by ``onestack up``."""
