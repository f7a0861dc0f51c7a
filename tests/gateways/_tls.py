"""A throw-away TLS certificate authority for the local gateway servers."""

from __future__ import annotations

import os
import ssl
import tempfile

import trustme


class LocalTLS:
    """A throw-away certificate authority, and a server certificate for 127.0.0.1."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self._cert = self.ca.issue_cert("127.0.0.1", "localhost")
        fd, self.ca_file = tempfile.mkstemp(prefix="pushtrack-test-ca-", suffix=".pem")
        os.close(fd)
        self.ca.cert_pem.write_to_path(self.ca_file)

    def server_context(self, protocols: tuple[str, ...] | None = ("h2",)) -> ssl.SSLContext:
        """A server context choosing among ``protocols`` in ALPN (None: no ALPN at all)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(context)
        if protocols is not None:
            context.set_alpn_protocols(list(protocols))
        return context

    def write_server_files(self, cert_file: str, key_file: str) -> None:
        """The server's certificate chain and key as PEM files (for servers like nginx)."""
        self._cert.private_key_pem.write_to_path(key_file)
        with open(cert_file, "wb") as out:
            for blob in self._cert.cert_chain_pems:
                out.write(blob.bytes())

    def close(self) -> None:
        if os.path.exists(self.ca_file):
            os.unlink(self.ca_file)

    def __enter__(self) -> LocalTLS:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
