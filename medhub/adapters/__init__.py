"""Transports: thin shells that move bytes between the network and the pure codecs."""
