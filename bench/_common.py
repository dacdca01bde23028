"""Shared helpers for the bench scripts: local-emulator-only boto3 clients."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
from urllib.parse import urlparse

import boto3
from botocore.config import Config

DEFAULT_ENDPOINT = "http://127.0.0.1:4566"


def endpoint_url() -> str:
    """The emulator endpoint (AWS_ENDPOINT_URL or LocalStack's default); loopback only."""
    url = os.environ.get("AWS_ENDPOINT_URL") or DEFAULT_ENDPOINT
    host = urlparse(url).hostname or ""
    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo(host, None)}
    except OSError as e:
        sys.exit(f"error: cannot resolve emulator host {host!r} from {url}: {e}")
    if not addrs or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
        sys.exit(
            f"error: {url} is not a loopback address; these scripts only talk to a local "
            "emulator (start one with scripts/localstack.sh start)"
        )
    return url


def credentials() -> dict:
    return {
        "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", "111122223333"),
        "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        "aws_session_token": os.environ.get("AWS_SESSION_TOKEN") or None,
    }


class Clients:
    """One boto3 client per thread per (service, Region); boto3 sessions are not thread-safe."""

    def __init__(self, endpoint: str, pool: int = 4, retries: int = 3):
        self._endpoint = endpoint
        self._local = threading.local()
        self._config = Config(
            max_pool_connections=pool,
            retries={"max_attempts": retries, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        )

    def get(self, service: str, region: str):
        cache = getattr(self._local, "clients", None)
        if cache is None:
            cache = self._local.clients = {}
            self._local.session = boto3.session.Session()
        key = (service, region)
        if key not in cache:
            cache[key] = self._local.session.client(
                service,
                region_name=region,
                endpoint_url=self._endpoint,
                config=self._config,
                **credentials(),
            )
        return cache[key]
