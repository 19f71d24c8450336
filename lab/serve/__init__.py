"""The lab server (`invoke serve`): see lab/serve/app.py."""
