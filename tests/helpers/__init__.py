"""What the tests share, by kind: the repository and commands run in it (``repo``), running the
stages (``stages``), data the tests make (``data``) and the reproduced baseline the DVC tests
start from (``baseline``). Fixtures and pytest's hooks stay in ``tests/conftest.py``; servers the
tests start are ``tests/loopback.py``, ``tests/postgres.py`` and ``tests/s3_server.py``.
"""
