"""What the middlewared entry module (``vmware_coord.py``) delegates to.

Nothing here imports ``middlewared``: every module takes a plain ``call(method, *args)``
callable (``middleware.call_sync`` on TrueNAS, the test double in tests), so all of it is
testable without the framework.
"""
