"""The vendor's side: keys, signed model bundles and offline licenses.

Nothing here touches customer data: this package never imports ``facekeeper.gallery``,
``facekeeper.privacy`` or ``facekeeper.service`` (a test scans for it). It runs at the vendor, offline,
with the private key kept off any networked machine; the customer side only verifies (``facekeeper.bundle``).

Not named ``vendor/``: linters, duplicate finders and structure tools read such a folder as third-party
code and skip it, and this code must pass every check the rest does.
"""
