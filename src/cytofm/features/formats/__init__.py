"""Feature files in the layouts other pathology tools read and write: TRIDENT, CLAM and STAMP.

``geometry`` holds the patch attributes all three need (field of view at level 0, magnifications);
``slides`` reads and writes cytofm stores as plain per-slide records; one module per tool converts
those records to and from its layout, each an entry of ``registry.FEATURE_FORMATS``; ``convert`` is the
entry point of ``cytofm convert``.
"""
