"""OpenPitrix: multi-cloud application management server."""
