"""Gateway specifics: one module per gateway, their HTTP client, where they may
connect, and the failure class of their answers. The dispatch job that drives them
is ``jobs/dispatch.py``.
"""
