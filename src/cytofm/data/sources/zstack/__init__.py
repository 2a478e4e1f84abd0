"""Z-stacks: readers of multi-plane files (``stack``, ``ome``, ``czi``), plane policies (``source``) and
extended depth of field (``edf``)."""
