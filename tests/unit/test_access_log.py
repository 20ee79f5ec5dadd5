"""The API's access log (api.server.AccessLogger): the lines gunicorn's own logger writes, made for less."""

from __future__ import annotations

import datetime
import types

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from api.server import AccessLogger


def _line(logger_class: type[Logger], access_log_format: str | None, environ: dict, status: str, sent: int | None,
          headers: list[tuple[str, str]]) -> str:
    config = Config()
    if access_log_format is not None:
        config.set("access_log_format", access_log_format)
    logger = logger_class(config)
    response = types.SimpleNamespace(status=status, sent=sent, headers=headers)
    request = types.SimpleNamespace(headers=[("User-Agent", environ.get("HTTP_USER_AGENT", ""))])
    atoms = logger.atoms_wrapper_class(logger.atoms(response, request, environ,
                                                    datetime.timedelta(seconds=1, microseconds=2345)))
    return config.access_log_format % atoms


@pytest.mark.parametrize("access_log_format", [None, '%(h)s %(t)s "%(r)s" %(s)s %(B)s %(D)s %(L)s %(M)s %(T)s %(q)s '
                                                     '%(U)s %(m)s %(H)s %(p)s %(x)s',
                                               '%(h)s "%({user-agent}i)s" %({content-type}o)s %({raw_uri}e)s'])
@pytest.mark.parametrize(("status", "sent"), [("200 OK", 320), ("404 NOT FOUND", 0), (503, None)])
def test_the_lines_are_gunicorns_own(access_log_format, status, sent):
    environ = {"REMOTE_ADDR": "192.0.2.7", "REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1",
               "RAW_URI": "/api/v1/provisioning/pxe/boot?mac=52-54-00-00-00-01&product=A%20%22B%22",
               "PATH_INFO": "/api/v1/provisioning/pxe/boot", "QUERY_STRING": "mac=52-54-00-00-00-01",
               "HTTP_USER_AGENT": 'iPXE/1.21.1 "quoted"', "HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"}
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "320")]
    for _ in range(2):  # twice at most: the clock may turn to the next second between the two lines
        ours = _line(AccessLogger, access_log_format, environ, status, sent, headers)
        if ours == _line(Logger, access_log_format, environ, status, sent, headers):
            break
    assert ours == _line(Logger, access_log_format, environ, status, sent, headers)
    assert "192.0.2.7" in ours


def test_the_access_log_file_gets_gunicorns_lines(tmp_path, monkeypatch):
    """Written straight to gunicorn's file: the same lines as through logging, also after the files are
    reopened (SIGUSR1, as logrotate asks); with a handler that is not gunicorn's plain file, through logging."""
    import logging

    environ = {"REMOTE_ADDR": "192.0.2.7", "REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1",
               "RAW_URI": "/api/v1/provisioning/pxe/boot?mac=52-54-00-00-00-01", "HTTP_USER_AGENT": "iPXE/1.21.1"}
    response = types.SimpleNamespace(status="200 OK", sent=320, headers=[])
    request = types.SimpleNamespace(headers=[])
    elapsed = datetime.timedelta(microseconds=800)

    made = iter(range(10))
    # the server's own: gunicorn's handler alone (not the test run's, which catch every logger's records)
    monkeypatch.setattr(logging.getLogger("gunicorn.access"), "handlers", [])

    def lines(logger_class: type[Logger], name: str) -> list[str]:
        name = f"{next(made)}-{name}"  # files of their own each time
        config = Config()
        config.set("accesslog", str(tmp_path / name))
        logger = logger_class(config)
        assert logger_class is Logger or logger._plain_file() is not None  # written straight to the file
        logger.access(response, request, environ, elapsed)
        (tmp_path / name).rename(tmp_path / f"{name}.1")
        logger.reopen_files()
        logger.access(response, request, environ, elapsed)
        extra = logging.FileHandler(tmp_path / f"{name}.extra")
        logger.access_log.addHandler(extra)  # someone's own handler: every line goes through logging
        logger.access(response, request, environ, elapsed)
        logger.access_log.removeHandler(extra)
        extra.close()
        for handler in logger.access_log.handlers:
            handler.close()
        return [(tmp_path / f"{name}{suffix}").read_text() for suffix in (".1", "", ".extra")]

    for _ in range(2):  # twice at most: the clock may turn to the next second between the two loggers
        ours = lines(AccessLogger, "ours.log")
        if ours == lines(Logger, "gunicorns.log"):
            break
    assert ours == lines(Logger, "gunicorns.log")
    rotated, reopened, extra = ours
    assert rotated.count("\n") == 1 and reopened.count("\n") == 2 and extra.count("\n") == 1
    assert rotated.startswith("192.0.2.7 - - [")
    assert '"GET /api/v1/provisioning/pxe/boot?mac=52-54-00-00-00-01 HTTP/1.1" 200 320 "-" "iPXE/1.21.1"' in rotated
