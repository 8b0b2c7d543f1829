"""govsnap: signed, tamper-evident snapshots of a git repository's state."""

__version__ = "0.1.0"
