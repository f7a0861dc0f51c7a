"""Sending: the dispatcher and one module per gateway.

Gateway outcome → status + description mapping lives here and only here.
"""
