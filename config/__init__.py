"""Shipped configuration (`defaults.toml`) and its loading into frozen, validated settings."""

from config.loader import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "load_settings"]
