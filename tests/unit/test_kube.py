"""The operator's one door to the API: TLS from a kubeconfig leaves no key material on disk.

Issue 13, finding 6: a kubeconfig with inline client certificate and key data (as kind writes
one) had both written to NamedTemporaryFile(delete=False) and never removed. The operator now
uses kopf's own ConnectionInfo.as_ssl_context(), whose temporary files are gone before it
returns.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import kopf
import pytest

from umt_operator.kube import KubeAPI


def open_and_close(info: kopf.ConnectionInfo) -> dict[str, str]:
    """Build the operator's client from ``info`` (in an event loop, as aiohttp wants), close
    it, and return its default headers."""
    async def build() -> dict[str, str]:
        api = KubeAPI(info)
        try:
            return dict(api._session.headers)
        finally:
            await api.close()
    return asyncio.run(build())

pytestmark = pytest.mark.unit


@pytest.fixture
def client_pair(tmp_path: Path) -> tuple[bytes, bytes]:
    """A self-signed client certificate and its key (PEM), made by openssl."""
    key, cert = tmp_path / "client.key", tmp_path / "client.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=umt-operator-test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert.read_bytes(), key.read_bytes()


@pytest.fixture
def scratch_tmp(tmp_path: Path) -> Iterator[Path]:
    """An empty directory that `tempfile` uses for the duration of the test."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    before, tempfile.tempdir = tempfile.tempdir, str(scratch)
    try:
        yield scratch
    finally:
        tempfile.tempdir = before


@pytest.mark.parametrize("encoding", ["base64", "pem"])
def test_inline_client_key_never_stays_on_disk(
        client_pair: tuple[bytes, bytes], scratch_tmp: Path, encoding: str) -> None:
    cert, key = client_pair
    if encoding == "base64":  # as in a kubeconfig's client-certificate-data / client-key-data
        cert, key = base64.b64encode(cert), base64.b64encode(key)
    info = kopf.ConnectionInfo(server="https://127.0.0.1:6443",
                               certificate_data=cert, private_key_data=key)
    open_and_close(info)
    assert list(scratch_tmp.iterdir()) == []  # nothing left where the files were written


def test_a_broken_key_is_an_error_not_a_file(scratch_tmp: Path,
                                                   client_pair: tuple[bytes, bytes]) -> None:
    cert, _key = client_pair
    info = kopf.ConnectionInfo(server="https://127.0.0.1:6443", certificate_data=cert,
                               private_key_data=b"-----BEGIN PRIVATE KEY-----\nbroken\n")
    with pytest.raises(Exception):  # noqa: B017,PT011  (ssl.SSLError, from the ssl module)
        open_and_close(info)
    assert list(scratch_tmp.iterdir()) == []


def test_token_and_basic_credentials_become_headers() -> None:
    for info, expected in (
            (kopf.ConnectionInfo(server="http://x", scheme="Bearer", token="t0k"), "Bearer t0k"),
            (kopf.ConnectionInfo(server="http://x", username="u", password="p"),
             "Basic " + base64.b64encode(b"u:p").decode())):
        assert open_and_close(info)["Authorization"] == expected
