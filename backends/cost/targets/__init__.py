"""Shipped target files (TOML); copy one and edit it to describe another part."""
