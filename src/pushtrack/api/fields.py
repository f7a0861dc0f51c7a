"""Request fields the Pushwoosh API documents that pushtrack does not act on.

A request naming one is refused with 210 ``"<field>" is not supported (<reason>)``
rather than as an unknown field. None of them is ever accepted and ignored:
dropping any would change who receives a push or what they see.
"""

from __future__ import annotations

#: field name -> why pushtrack refuses it
NOT_SUPPORTED: dict[str, str] = {
    # targeting pushtrack does not do
    "applications_group": "application groups are not kept here; name the application",
    "segment": "segments are not kept here; use conditions or a saved filter",
    "preset": "presets are not kept here; send the notification's fields",
    "geozone": "no geolocation targeting",
    "geozones": "no geolocation targeting",
    "voice": "no voice messages",
    # channels pushtrack does not send on
    "email": "no email channel here; devices register with hwid and push_token",
}
