"""data/offline."""
