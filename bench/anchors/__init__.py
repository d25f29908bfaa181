"""Anchors: peers in other languages, measured in their own process with the same method
and reported in the same table (see ``bench.anchors.runner`` for BlueLibs Runner)."""
