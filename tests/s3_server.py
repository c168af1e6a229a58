"""moto's S3 server on 127.0.0.1, a bucket for the DVC remote tests (tests/test_remote.py,
tests/test_s3_remote.py).

The server runs in a thread of the test process, on a free port of the loopback interface; DVC
reaches it through the remote's ``endpointurl``, as it would reach MinIO or another S3-compatible
store. Dummy credentials come from the environment, which is cleared of every other AWS setting:
no test reaches the internet or uses a developer's own credentials or profiles.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

REGION = "us-east-1"
# Every AWS setting that could point botocore at real credentials, another endpoint or a proxy.
AWS_SETTINGS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@contextmanager
def s3_server(scratch: Path) -> Iterator[str]:
    """moto's S3 server with the test environment's credentials: its endpoint URL.

    ``scratch`` is a folder for the (absent) AWS config files the environment names."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as env:
        for name in AWS_SETTINGS:
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.setenv("AWS_CONFIG_FILE", str(scratch / "no-aws-config"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(scratch / "no-aws-credentials"))
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata look-up
        env.setenv("NO_PROXY", "127.0.0.1")
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()


def create_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(Bucket=bucket)


@contextmanager
def refused_credentials(endpoint: str) -> Iterator[None]:
    """The server checks every request's credentials, and knows none: each is refused (403)."""
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
    try:
        yield
    finally:
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)
