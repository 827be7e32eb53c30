"""The vendor's side: keys, signed model bundles and offline licenses.

Nothing here touches customer data: this package never imports ``facekeeper.gallery``,
``facekeeper.privacy`` or ``facekeeper.service`` (a test scans for it). It runs at the vendor, offline,
with the private key kept off any networked machine; the customer side only verifies (``facekeeper.bundle``).
"""
