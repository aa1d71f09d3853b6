"""Placeholder replaced below while the proxy is written."""
