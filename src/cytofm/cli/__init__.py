"""The ``cytofm`` command line."""
