"""`serveoff probe`: production readiness measured, one module per probe, written to ``probes.json``."""
