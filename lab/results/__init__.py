"""The results folder: making it, manifest.json, sweep.json, and a read-only view of a folder."""
